"""Attention: how much the decoder's next word draws on each source annotation.

The interface, which the built-in scores below and any user class implement alike
(``model.attention_class=my_module.MyAttention``; the current directory and
PYTHONPATH are searched):

* **Construction**: ``MyAttention(query_dim=Hq, key_dim=K, attn_dim=A)``, all keywords.
  Hq is the decoder state's width, K the annotations' (2He), A is ``model.attention.dim``
  (a class may ignore it).  The class must be a ``torch.nn.Module``: its parameters are the
  model's, trained, saved in checkpoints and averaged like any other.
* **precompute** (optional): ``precompute(states [B, S, K]) -> keys``, called once per batch
  with the annotations h_j.  Whatever does not depend on the decoder step goes here
  (Bahdanau's U_a h_j).  Without it, the keys are the annotations themselves.
* **forward**: ``forward(query [B, Hq], keys, mask [B, S] bool) -> weights [B, S]``, once per
  decoder step.  The query is the decoder state the placement attends from (s_{i-1} for
  Bahdanau's, s_i for Luong's).  ``weights`` must sum to 1 over the real positions
  (``mask`` True) and be 0 on padding; :func:`masked_softmax` does both.  The decoder forms
  the context c_i = Σ_j α_ij h_j itself (eq. 5).
* **history** (optional): if ``forward`` also takes a parameter named ``history``, the
  decoder passes an :class:`AttentionHistory`: the previous step's weights α_{i-1} and
  their running sum Σ_{k<i} α_k, both [B, S] float32 and zeros at the first step.  That is
  how location-aware attention (Chorowski et al. 2015) and coverage attention (Tu et al.
  2016) are written; see examples/.

When the model is built, a user class is checked against this interface on a tiny batch;
what is missing is reported in one line (:func:`check_attention`).  The fixed context of the
baseline is not an attention: it lives in :mod:`pipeline.model.context`.

Shapes in this module: B sentences, S source positions, Hq query width, K key width, A attn_dim.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.model.config import AttentionScore, ModelConfig


@dataclass
class AttentionHistory:
    """What an attention that takes ``history`` sees of the past steps (zeros at the first step).

    previous    [B, S] float32  α_{i-1}
    cumulative  [B, S] float32  Σ_{k<i} α_k (the coverage of Tu et al. 2016)
    """

    previous: torch.Tensor
    cumulative: torch.Tensor

    @staticmethod
    def start(mask: torch.Tensor) -> AttentionHistory:
        zeros = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        return AttentionHistory(zeros, zeros)

    def after(self, weights: torch.Tensor) -> AttentionHistory:
        """The history the next step sees, once this step attended with ``weights`` [B, S]."""
        return AttentionHistory(weights, self.cumulative + weights)

    def index_select(self, idx: torch.Tensor) -> AttentionHistory:
        return AttentionHistory(self.previous.index_select(0, idx), self.cumulative.index_select(0, idx))


def masked_softmax(energies: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """α = softmax of ``energies`` [B, S] over the positions where ``mask`` [B, S] is True (eq. 5).

    Float32 even under low-precision autocast; padded positions get exactly 0.
    """
    return torch.softmax(energies.float().masked_fill(~mask, float("-inf")), dim=-1)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. 2015, eq. 6 and appendix A.1.2: the alignment model of RNNsearch.

    e_ij = v_aᵀ tanh(W_a s_{i-1} + U_a h_j),   α_i = softmax_j(e_ij) over real positions (eq. 5)

    U_a h_j does not depend on the step, so :meth:`precompute` applies it once per batch.
    As in the paper there are no biases.  keys U_a h [B, S, A].
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.attn_dim = attn_dim
        self.W_a = nn.Linear(query_dim, attn_dim, bias=False)
        self.U_a = nn.Linear(key_dim, attn_dim, bias=False)
        self.v_a = nn.Parameter(torch.empty(attn_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W_a, U_a Xavier-uniform; v_a U(-1/sqrt(A), 1/sqrt(A)).

        (The paper starts v_a at 0, which would give W_a and U_a no gradient on the first update.)
        """
        nn.init.xavier_uniform_(self.W_a.weight)
        nn.init.xavier_uniform_(self.U_a.weight)
        bound = self.attn_dim**-0.5
        nn.init.uniform_(self.v_a, -bound, bound)

    def precompute(self, states: torch.Tensor) -> torch.Tensor:
        """U_a h_j for every source position [B, S, A]."""
        return self.U_a(states)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """α_i [B, S] for the query s_{i-1} [B, Hq]."""
        pre = keys + self.W_a(query).unsqueeze(1)  # [B, S, A]
        energies = torch.matmul(torch.tanh(pre), self.v_a.to(pre.dtype))  # e_ij, eq. 6
        return masked_softmax(energies, mask)


class DotAttention(nn.Module):
    """Luong, Pham & Manning 2015, eq. 8 'dot': e_ij = s_{i-1}ᵀ h_j.

    Needs Hq = K; otherwise h_j is first projected to Hq by a learned W (which is 'general').
    ``attn_dim`` does not apply.  keys (W) h [B, S, Hq].
    """

    scale = 1.0

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int, project: bool = False) -> None:
        super().__init__()
        self.W = nn.Linear(key_dim, query_dim, bias=False) if project or key_dim != query_dim else None
        if self.W is not None:
            nn.init.xavier_uniform_(self.W.weight)

    def precompute(self, states: torch.Tensor) -> torch.Tensor:
        """W h_j (or h_j itself) for every source position [B, S, Hq]."""
        return states if self.W is None else self.W(states)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """α_i [B, S] for the query [B, Hq]."""
        energies = torch.bmm(keys, query.to(keys.dtype).unsqueeze(2)).squeeze(2)  # [B, S]
        return masked_softmax(energies * self.scale if self.scale != 1.0 else energies, mask)


class GeneralAttention(DotAttention):
    """Luong et al. 2015, eq. 8 'general': e_ij = s_{i-1}ᵀ W h_j, W [Hq, K] without bias."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__(query_dim, key_dim, attn_dim, project=True)


class ScaledDotAttention(DotAttention):
    """e_ij = s_{i-1}ᵀ h_j / sqrt(Hq) (Vaswani et al. 2017's scaling; projected as :class:`DotAttention`)."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__(query_dim, key_dim, attn_dim)
        self.scale = query_dim**-0.5


BUILT_IN: dict[AttentionScore, type[nn.Module]] = {
    AttentionScore.additive: AdditiveAttention,
    AttentionScore.dot: DotAttention,
    AttentionScore.general: GeneralAttention,
    AttentionScore.scaled_dot: ScaledDotAttention,
}


def takes_history(attention: nn.Module) -> bool:
    """Whether ``attention.forward`` wants the :class:`AttentionHistory` (a parameter named ``history``)."""
    return "history" in inspect.signature(attention.forward).parameters


def attention_class(cfg: ModelConfig) -> type[nn.Module]:
    """The class ``model.attention_class`` names, else the built-in of ``model.attention.score``."""
    if cfg.attention_class:
        return import_class(cfg.attention_class)
    return BUILT_IN[AttentionScore(cfg.attention.score)]


def import_class(path: str, key: str = "model.attention_class") -> type:
    """The class at ``module.Class``, importing the module from the current directory or PYTHONPATH."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise UserError(f"{key}={path} must be module.Class, e.g. my_attention.MyAttention")
    if os.getcwd() not in sys.path and "" not in sys.path:  # console scripts do not search the current directory
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(
            f"{key}={path}: cannot import {module_name} ({err}); put {module_name.replace('.', '/')}.py in the "
            "current directory or on PYTHONPATH"
        ) from None
    except Exception as err:
        raise UserError(f"{key}={path}: importing {module_name} failed ({type(err).__name__}: {err})") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise UserError(f"{key}={path}: {module_name} has no class {class_name}")
    return cls


def build_attention(cls: type[nn.Module], query_dim: int, key_dim: int, attn_dim: int) -> nn.Module:
    """``cls(query_dim=..., key_dim=..., attn_dim=...)``, checked against the interface."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not issubclass(cls, nn.Module):
        raise UserError(f"attention {name} is not a torch.nn.Module subclass; derive it from nn.Module")
    try:
        attention = cls(query_dim=query_dim, key_dim=key_dim, attn_dim=attn_dim)
    except TypeError as err:
        raise UserError(
            f"attention {name}(query_dim={query_dim}, key_dim={key_dim}, attn_dim={attn_dim}) failed ({err}); "
            "its __init__ must take these three keywords"
        ) from None
    if cls not in BUILT_IN.values():
        check_attention(attention, name, query_dim, key_dim)
    return attention


def check_attention(attention: nn.Module, name: str, query_dim: int, key_dim: int) -> None:
    """Run ``attention`` once on a tiny batch (2 sentences, 3 positions, one of them padding) and
    raise a one-line :class:`UserError` saying what does not meet the interface."""
    params = list(inspect.signature(attention.forward).parameters)
    if len([p for p in params if p != "history"]) < 3:
        raise UserError(
            f"attention {name}.forward must take (query, keys, mask) and optionally history; it takes {params}"
        )
    g = torch.Generator().manual_seed(0)
    states = torch.randn(2, 3, key_dim, generator=g)
    query = torch.randn(2, query_dim, generator=g)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    extra = {"history": AttentionHistory.start(mask)} if takes_history(attention) else {}
    was_training = attention.training
    attention.eval()
    try:
        with torch.no_grad():
            keys = attention.precompute(states) if hasattr(attention, "precompute") else states
            weights = attention(query, keys, mask, **extra)
    except Exception as err:
        raise UserError(
            f"attention {name} failed on a test batch (query [2, {query_dim}], states [2, 3, {key_dim}], "
            f"mask [2, 3]): {type(err).__name__}: {err}"
        ) from None
    finally:
        attention.train(was_training)
    if not isinstance(weights, torch.Tensor) or weights.shape != mask.shape:
        got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise UserError(
            f"attention {name}.forward must return weights [B, S] = [2, 3] for that batch; it returned {got}"
        )
    w = weights.float()
    if not torch.isfinite(w[mask]).all() or (w[~mask].abs() > 1e-6).any():
        raise UserError(f"attention {name}: weights must be finite and 0 where mask is False (use masked_softmax)")
    if not torch.allclose(w.sum(-1), torch.ones(2), atol=1e-3):
        raise UserError(
            f"attention {name}: weights must sum to 1 over the real positions; they sum to "
            f"{[round(x, 4) for x in w.sum(-1).tolist()]} (use pipeline.model.attention.masked_softmax)"
        )
