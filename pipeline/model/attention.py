"""Context modules: Bahdanau attention (RNNsearch) and the fixed context of the RNN encoder-decoder.

Both share one interface, so the decoder never knows which one it holds::

    keys = module.precompute(enc)                          # once per batch
    context, weights = module(query, keys, enc)            # once per decoder step

``has_attention`` tells callers whether ``weights`` is a tensor or None; ``static``
tells the decoder that the context does not depend on the step, so that it can be
hoisted out of the recurrence.  The attention modules also have ``attend_all``, the
same function for the queries of all T steps at once, for Luong's placement, where the
queries (s_i) do not depend on the attention and so are all known before it runs.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.cpu_kernels import cpu_kernels
from pipeline.model.encoder import EncoderOutput
from pipeline.model.linear import linear

ADDITIVE_CHUNK_ELEMENTS = 1 << 25  # attend_all bounds its [B, t, S, A] tanh input to this many elements


def _normalise(energies: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked softmax of ``energies`` [B, S] or [B, T, S] (eq. 5) and the context Σ_j α_ij h_j.

    The softmax runs in float32 even under low-precision autocast; masked energies are
    -inf, so padded positions get exactly 0 weight.  Returns (context [B, (T,) 2He], α float32).
    """
    mask = enc.mask if energies.dim() == 2 else enc.mask.unsqueeze(1)
    weights = torch.softmax(torch.where(mask, energies, float("-inf")), dim=-1, dtype=torch.float32)
    states = enc.states
    w = weights.to(states.dtype)
    context = torch.bmm(w.unsqueeze(1), states).squeeze(1) if w.dim() == 2 else torch.bmm(w, states)
    return context, weights


def _fused_step(
    q: torch.Tensor, keys: torch.Tensor, v: torch.Tensor, enc: EncoderOutput
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(context, α) of the additive step by the fused CPU kernel, or None where it does not apply:
    gradients needed (its backward is :mod:`pipeline.model.recurrence`'s), other devices, mixed dtypes."""
    states = enc.states
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, keys, v, states)):
        return None
    if keys.dtype != states.dtype:
        return None
    kernel = cpu_kernels(keys.device)
    if kernel is None:
        return None
    alpha = torch.empty(enc.mask.shape, dtype=torch.float32, device=keys.device)
    context = torch.empty(states.shape[0], states.shape[2], dtype=states.dtype, device=keys.device)
    q, v = q.float().contiguous(), v.float().contiguous()
    kernel.attention_forward(keys.contiguous(), q, v, states.contiguous(), enc.mask.contiguous(), alpha, context)
    return context, alpha


class BahdanauAttention(nn.Module):
    """Additive attention (Bahdanau et al. 2015, eqs. 5-6 and appendix A.1.2).

    e_ij     = v_aᵀ tanh(W_a s_{i-1} + U_a h_j)            (eq. 6, the alignment model)
    α_ij     = exp(e_ij) / Σ_k exp(e_ik)                     (eq. 5, over real source positions only)
    c_i      = Σ_j α_ij h_j                                  (eq. 5)

    Shapes: query s_{i-1} [B, Hd] (s_i under Luong's placement, :mod:`pipeline.model.luong`);
    annotations h [B, S, 2He]; keys U_a h [B, S, A];
    context [B, 2He]; weights [B, S] (float32, exactly 0 on padded positions).
    As in the paper there are no biases.  Stateless between calls.
    """

    has_attention = True
    static = False

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.query_dim, self.key_dim, self.attn_dim = query_dim, key_dim, attn_dim
        self.W_a = nn.Linear(query_dim, attn_dim, bias=False)
        self.U_a = nn.Linear(key_dim, attn_dim, bias=False)
        self.v_a = nn.Parameter(torch.empty(attn_dim))
        self.reset_parameters()

    @property
    def context_dim(self) -> int:
        return self.key_dim

    @property
    def query_projection(self) -> nn.Linear | None:
        """W_a, for callers that fuse it with another GEMM on the same query; then call :meth:`attend`."""
        return self.W_a

    def reset_parameters(self) -> None:
        """W_a, U_a Xavier-uniform; v_a U(-1/sqrt(A), 1/sqrt(A)).

        (The paper starts v_a at 0, which would give W_a and U_a no gradient on the first update.)
        """
        nn.init.xavier_uniform_(self.W_a.weight)
        nn.init.xavier_uniform_(self.U_a.weight)
        bound = self.attn_dim**-0.5
        nn.init.uniform_(self.v_a, -bound, bound)

    def precompute(self, enc: EncoderOutput) -> torch.Tensor:
        """keys = U_a h_j for every source position [B, S, A]: step-independent, so computed once per batch."""
        return linear(enc.states, self.U_a.weight)

    def attend(self, q: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention from an already projected query q = W_a s_{i-1} [B, A].

        Returns (context c_i [B, 2He], weights α_i [B, S] float32).  The softmax runs in
        float32 even under low-precision autocast; masked energies are -inf, so padded
        positions get exactly 0 weight.  Without gradients (search) on the CPU the step runs
        as one call of the fused kernel (pipeline/model/cpu_kernels.py) when it is available.
        """
        fused = _fused_step(q, keys, self.v_a, enc)
        if fused is not None:
            return fused
        energies = torch.matmul(torch.tanh(keys + q.unsqueeze(1)), self.v_a.to(keys.dtype))  # [B, S]  eq. 6
        return _normalise(energies, enc)

    def attend_all(self, q: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`attend` for the projected queries of all steps, q [B, T, A]: (context [B, T, 2He], α [B, T, S]).

        The [B, T, S, A] tanh input is built a chunk of steps at a time, at most
        ``ADDITIVE_CHUNK_ELEMENTS`` elements (unless one step alone is larger).  That bounds
        memory without gradients (validation, alignment); in training autograd keeps every
        chunk's tanh for the backward pass, B*T*S*A in all, as the step-by-step loop does.
        """
        b, t, a = q.shape
        step = max(1, ADDITIVE_CHUNK_ELEMENTS // max(1, b * keys.shape[1] * a))
        v = self.v_a.to(keys.dtype)
        energies = torch.cat(
            [
                torch.matmul(torch.tanh(keys.unsqueeze(1) + chunk.to(keys.dtype).unsqueeze(2)), v)
                for chunk in q.split(step, dim=1)
            ],
            dim=1,
        )  # [B, T, S]  eq. 6
        return _normalise(energies, enc)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """c_i and α_i for query s_{i-1} [B, Hd]; ``keys`` from :meth:`precompute`."""
        return self.attend(self.W_a(query), keys, enc)


class DotProductAttention(nn.Module):
    """Multiplicative scores (Luong, Pham & Manning 2015, eq. 8), queried with s_{i-1} as in Bahdanau
    (with s_i under Luong's placement, :mod:`pipeline.model.luong`).

    dot         e_ij = s_{i-1}ᵀ h_j                 needs Hd = 2He; otherwise h_j is first
                                                    projected to Hd by a learned W (= general)
    general     e_ij = s_{i-1}ᵀ W h_j               W: [Hd, 2He], no bias
    scaled_dot  e_ij = s_{i-1}ᵀ h_j / sqrt(Hd)      (the same projection rule as dot)

    α and c_i as in eq. 5.  W h_j does not depend on the step, so ``precompute`` applies it
    once per batch and each step costs one batched matrix-vector product instead of the
    additive score's [S, A] tanh.  Same interface and shapes as :class:`BahdanauAttention`.
    """

    has_attention = True
    static = False
    query_projection: nn.Linear | None = None  # scores use s_{i-1} itself

    def __init__(self, query_dim: int, key_dim: int, score: str) -> None:
        super().__init__()
        self.query_dim, self.key_dim, self.score = query_dim, key_dim, score
        project = score == "general" or key_dim != query_dim
        self.W = nn.Linear(key_dim, query_dim, bias=False) if project else None
        self.scale = query_dim**-0.5 if score == "scaled_dot" else 1.0
        self.reset_parameters()

    @property
    def context_dim(self) -> int:
        return self.key_dim

    def reset_parameters(self) -> None:
        """W Xavier-uniform (when present)."""
        if self.W is not None:
            nn.init.xavier_uniform_(self.W.weight)

    def precompute(self, enc: EncoderOutput) -> torch.Tensor:
        """keys = W h_j (or h_j) for every source position [B, S, Hd]."""
        return enc.states if self.W is None else linear(enc.states, self.W.weight)

    def attend(self, q: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(context [B, 2He], weights [B, S] float32) for the query q = s_{i-1} [B, Hd]."""
        energies = torch.bmm(keys, q.to(keys.dtype).unsqueeze(2)).squeeze(2)  # [B, S]
        if self.scale != 1.0:
            energies = energies * self.scale
        return _normalise(energies, enc)

    def attend_all(self, q: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`attend` for the queries of all steps, q [B, T, Hd]: one batched GEMM for every score."""
        energies = torch.bmm(q.to(keys.dtype), keys.transpose(1, 2))  # [B, T, S]
        if self.scale != 1.0:
            energies = energies * self.scale
        return _normalise(energies, enc)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.attend(query, keys, enc)


class FixedContext(nn.Module):
    """The RNN encoder-decoder baseline: c_i = c for every step i.

    Appendix A.2.2: RNNsearch "becomes RNN Encoder-Decoder if we fix c_i to →h_{T_x}".
    Here c = [→h_{T_x} ; ←h_1] (``enc.summary`` [B, 2He]), the bidirectional analogue,
    so that the two models differ only in this module.  No parameters.
    """

    has_attention = False
    static = True
    query_projection: nn.Linear | None = None

    def __init__(self, key_dim: int | None = None) -> None:
        super().__init__()
        self.key_dim = key_dim

    @property
    def context_dim(self) -> int | None:
        return self.key_dim

    def precompute(self, enc: EncoderOutput) -> torch.Tensor:
        """The fixed context c [B, 2He]."""
        return enc.summary

    def forward(self, query: torch.Tensor, keys: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, None]:
        """(c [B, 2He], None) whatever the step."""
        return enc.summary, None
