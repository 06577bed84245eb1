"""A GRU recurrence, optionally conditioned on attention, as one autograd function with a
hand-written backward pass: the teacher-forced loop of :class:`pipeline.model.decoder.Decoder`
(Bahdanau et al. 2015, eqs. 4-6 and appendix A.2.2) for the built-in attention scores, in
:class:`pipeline.fast.decoder.RecurrenceDecoder`, and, without attention over packed
sequences (:func:`packed_gru_recurrence`), each direction of each layer of the encoder's GRU
on the CPU (:class:`pipeline.fast.encoder.PackedGruEncoder`).

Why by hand: under autograd every step of the loop leaves ~30 graph nodes, and the backward
pass then computes each weight's gradient as one small GEMM *per step* and adds them up, and
accumulates the keys' gradient [B, S, A] tensor by tensor.  Here the backward loop only
carries what truly depends on the previous step (the gradient of s_{i-1} and of c_i); every
weight gradient is one large GEMM over all steps after the loop, as in cuDNN's RNN kernels:

    [∂W_q ∂b_q] = Σ_i ∂[gh_i; q_i]ᵀ [s_{i-1} 1]    one [3Hd+A, T·B] x [T·B, Hd+1] GEMM
    ∂W_ic  = Σ_i ∂gi_iᵀ c_i                   one [3Hd, T·B] x [T·B, C] GEMM
    ∂h     = Σ_i α_iᵀ ∂c_i                    one batched GEMM [B, S, T] x [B, T, C]
    ∂(U_a h) = Σ_i ∂pre_i                     one reduction over T

Forward, per step i, given s_{i-1} [B, Hd] (W_q = [W_hh ; W_a], b_q = [b_hh ; 0]):

    [gh_rz, gh_n, q] = W_q s_{i-1} + b_q
    e_ij = v_aᵀ tanh(U_a h_j + q)              additive, eq. 6     (q = W_a s_{i-1})
    e_ij = scale · s_{i-1}ᵀ k_j                dot / general / scaled_dot (k = h or W h)
    α_i  = softmax_j(e_ij) over real positions (float32),  c_i = Σ_j α_ij h_j      eq. 5
    gi   = gi_emb_i + W_ic c_i                 gi_emb_i = W_ie E y_{i-1} + b_ih (computed outside)
    r, z = σ(gi_rz + gh_rz),  n = tanh(gi_n + r ⊙ gh_n),  s_i = (1 - z) ⊙ n + z ⊙ s_{i-1}     eq. 4

The fixed-context baseline uses the same function without attention (``gi`` then already
holds W_ic c); the encoder, whose batches carry source padding, uses its packed twin, where
step t runs only the sequences still going (W_ih x_t + b_ih of the encoder layer as ``gi``).  The forward
computes the operations of the reference's step (:meth:`Decoder.advance`), so fp32 outputs
agree to float rounding, and so do the gradients with autograd's
(tests/unit/fast/test_recurrence.py, tests/unit/fast/test_equivalence.py).  All tensors must be in one compute dtype
(bf16 under autocast), except the attention weights and the softmax, which are float32, and,
in the bf16 backward on the CPU, the state's gradient ∂s_i, carried through the steps in
float32 (:func:`_carry_state_gradient_in_f32`).

On the CPU two pieces of each step run as compiled kernels (pipeline/fast/cpu_kernels.py):
the additive score, softmax and context (one object per score kind below holds its
per-step work and its backward), and the GRU gates and update, when the caller passes the
loaded ``kernels``; elsewhere (CUDA, or no compiler) the same arithmetic runs as torch ops.
In fp32 on the CPU each step's products with W_q and W_ic (and their transposes in the backward)
use a copy of the weight that MKL packed once per call (pipeline/fast/packed_gemm.py).
"""

from __future__ import annotations

import torch

from pipeline.fast.mixed_gemm import add_product, bias_grad, mkl_available, weight_grad
from pipeline.fast.packed_gemm import RepeatedWeight

ADDITIVE, DOT, STATIC = "additive", "dot", "static"


class _AdditiveKernelScore:
    """Eqs. 5-6 by the fused CPU kernel (pipeline/fast/kernels/additive_attention.cpp): one call
    per step computes scores, softmax and context; the backward recomputes tanh(U_a h + q), so
    only the queries q_i [T, B, A] (float32) are kept."""

    def __init__(self, kernel, keys, states, mask, v, t_len, save):
        self.kernel, self.keys, self.states = kernel, keys.contiguous(), states.contiguous()
        self.mask = mask.contiguous()
        self.v_f = v.float().contiguous()
        self.saved = torch.empty(t_len if save else 1, *keys.shape[::2], dtype=torch.float32, device=keys.device)

    def forward(self, i, s, q, alpha_out, context_out):
        q_i = self.saved[i if self.saved.shape[0] > 1 else 0]
        q_i.copy_(q)
        self.kernel.attention_forward(self.keys, q_i, self.v_f, self.states, self.mask, alpha_out, context_out)

    def start_backward(self):
        self.d_keys = torch.zeros(self.keys.shape, dtype=torch.float32, device=self.keys.device)
        self.d_v = torch.zeros(self.v_f.shape, dtype=torch.float32, device=self.keys.device)

    def backward(self, i, alpha, dc, d_q, ds):
        """Writes ∂q_i into ``d_q``; returns ∂s_{i-1} (unchanged: the query is q_i = W_a s_{i-1}, in W_q)."""
        d_q.copy_(
            self.kernel.attention_backward(
                self.keys, self.saved[i], self.v_f, self.states, self.mask, alpha, dc.float(), self.d_keys, self.d_v
            )
        )
        return ds

    def grads(self, s_all, dtypes):
        return self.d_keys.to(dtypes[0]), self.d_v.to(dtypes[1])


class _AdditiveTorchScore:
    """Eqs. 5-6 in torch ops (other devices, or where the kernel cannot be built).  The element-wise
    work is in float32, as bf16 tanh is ~4x slower on CPUs; tanh(U_a h + q_i) is kept per step."""

    def __init__(self, keys, states, mask, v, t_len, save):
        self.keys_f, self.states, self.pad, self.v_f = keys.float(), states, ~mask, v.float()
        self.saved = self.keys_f.new_empty(t_len if save else 1, *keys.shape)

    def forward(self, i, s, q, alpha_out, context_out):
        th = torch.add(self.keys_f, q.float().unsqueeze(1), out=self.saved[i if self.saved.shape[0] > 1 else 0])
        energies = torch.matmul(th.tanh_(), self.v_f)  # [B, S], float32
        _normalise(energies, self.pad, self.states, alpha_out, context_out)

    def start_backward(self):
        self.d_v = torch.zeros_like(self.v_f)

    def backward(self, i, alpha, dc, d_q, ds):
        de = _softmax_backward(alpha, self.states, dc)
        th = self.saved[i]
        self.d_v += torch.mv(th.flatten(0, 1).t(), de.flatten())
        d_th = de.unsqueeze(2) * self.v_f  # ∂tanh output [B, S, A]
        torch.addcmul(d_th, d_th, th.square_(), value=-1.0, out=th)  # saved[i] := ∂pre_i
        d_q.copy_(th.sum(1))  # ∂q_i = Σ_j ∂pre_ij
        return ds

    def grads(self, s_all, dtypes):
        return self.saved.sum(0).to(dtypes[0]), self.d_v.to(dtypes[1])


class _DotScore:
    """e_ij = scale · s_{i-1}ᵀ k_j (dot / general / scaled_dot); the query is s_{i-1} itself."""

    def __init__(self, keys, states, mask, scale):
        self.keys, self.states, self.pad, self.scale = keys, states, ~mask, scale
        self.d_e = None

    def forward(self, i, s, q, alpha_out, context_out):
        energies = torch.bmm(self.keys, s.unsqueeze(2)).squeeze(2)
        if self.scale != 1.0:
            energies = energies * self.scale
        _normalise(energies, self.pad, self.states, alpha_out, context_out)

    def start_backward(self):
        self.d_e = None

    def backward(self, i, alpha, dc, d_q, ds):
        de = _softmax_backward(alpha, self.states, dc)
        if self.d_e is None:
            self.d_e = torch.empty(i + 1, *de.shape, dtype=de.dtype, device=de.device)
        self.d_e[i] = de
        return ds + self.scale * torch.bmm(de.to(ds.dtype).unsqueeze(1), self.keys).squeeze(1)

    def grads(self, s_all, dtypes):
        d_keys = torch.bmm(self.d_e.to(s_all.dtype).permute(1, 2, 0), s_all[: self.d_e.shape[0]].transpose(0, 1))
        return (d_keys * self.scale if self.scale != 1.0 else d_keys), None


def _normalise(energies, pad, states, alpha_out, context_out):
    """α_i = softmax over real positions (float32) into ``alpha_out``; c_i = Σ_j α_ij h_j into ``context_out``."""
    alpha = torch.softmax(energies.masked_fill(pad, float("-inf")), dim=-1, dtype=torch.float32)
    alpha_out.copy_(alpha)
    torch.bmm(alpha.to(states.dtype).unsqueeze(1), states, out=context_out.unsqueeze(1))


def _softmax_backward(alpha, states, dc):
    """∂e_i [B, S] float32 from ∂c_i: ∂α_ij = h_j · ∂c_i, then the softmax backward (0 on padding)."""
    d_alpha = torch.bmm(states, dc.unsqueeze(2)).squeeze(2).float()
    return alpha * (d_alpha - (alpha * d_alpha).sum(-1, keepdim=True))


def _score(mode, keys, states, mask, v, scale, t_len, save, kernels):
    """The per-step attention of ``mode``: the fused CPU kernel for the additive score where
    ``kernels`` (pipeline/fast/cpu_kernels.py) are given for a CPU tensor, else torch ops; None without attention."""
    if mode == STATIC:
        return None
    if mode == DOT:
        return _DotScore(keys, states, mask, scale)
    kernel = kernels if keys.device.type == "cpu" else None
    if kernel is not None:
        return _AdditiveKernelScore(kernel, keys, states, mask, v, t_len, save)
    return _AdditiveTorchScore(keys, states, mask, v, t_len, save)


class _GruRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, s0, w_q, b_q, w_ic, keys, states, mask, v, mode, scale, save, kernels):
        hd = s0.shape[1]
        t_len, b = gi.shape[:2]
        ctx.weight_dtypes = (w_q.dtype, b_q.dtype, None if w_ic is None else w_ic.dtype)
        with torch.autocast(gi.device.type, enabled=False):
            w_q, b_q = w_q.to(gi.dtype), b_q.to(gi.dtype)  # float32 master weights: cast here, gradients float32
            w_ic = None if w_ic is None else w_ic.to(gi.dtype)
            score = _score(mode, keys, states, mask, v, scale, t_len, save, kernels)
            s_all = gi.new_empty(t_len + 1, b, hd)
            s_all[0] = s0
            rz_all, n_all, ghn_all = (
                gi.new_empty(t_len, b, 2 * hd),
                gi.new_empty(t_len, b, hd),
                gi.new_empty(t_len, b, hd),
            )
            if score is not None:
                c_all = gi.new_empty(t_len, b, states.shape[2])
                a_all = torch.empty(t_len, b, keys.shape[1], dtype=torch.float32, device=gi.device)
            else:
                c_all, a_all = gi.new_empty(0), gi.new_empty(0)
            q_weight = RepeatedWeight(w_q, transpose=True, rows=b)  # fp32 on the CPU: packed once, by MKL
            ic_weight = RepeatedWeight(w_ic, transpose=True, rows=b) if score is not None else None
            cell = _cell_kernels(gi, kernels)
            cell_forward = _cell_forward if cell is None else cell.gru_cell_forward  # kernels/gru_cell.cpp
            for i in range(t_len):
                s = s_all[i]
                gq = q_weight.addmm(b_q, s)
                if score is not None:
                    score.forward(i, s, gq[:, 3 * hd :], a_all[i], c_all[i])
                    step_gi = ic_weight.addmm(gi[i], c_all[i])
                else:
                    step_gi = gi[i]
                cell_forward(step_gi, gq, s, rz_all[i], n_all[i], ghn_all[i], s_all[i + 1])
        if save:
            ctx.save_for_backward(s_all, rz_all, n_all, ghn_all, c_all, a_all, w_q, w_ic, keys, states, v)
            ctx.score, ctx.kernels = score, kernels
        ctx.mark_non_differentiable(a_all)
        return s_all, c_all, a_all

    @staticmethod
    def backward(ctx, d_s_all, d_c_all, _d_a_all):
        s_all, rz_all, n_all, ghn_all, c_all, a_all, w_q, w_ic, keys, states, v = ctx.saved_tensors
        score = ctx.score
        t_len, b, hd = n_all.shape
        dt = s_all.dtype
        with torch.autocast(s_all.device.type, enabled=False):
            d_s_all = d_s_all.to(dt)
            d_gi = s_all.new_empty(t_len, b, 3 * hd)
            d_gq = s_all.new_empty(t_len, b, w_q.shape[0])
            if score is not None:
                d_c_all = d_c_all.to(dt)
                d_ctx = s_all.new_empty(t_len, b, states.shape[2])
                score.start_backward()
            cell = _cell_kernels(s_all, ctx.kernels)
            carry_f32 = _carry_state_gradient_in_f32(cell, dt, score)
            q_weight = None if carry_f32 else RepeatedWeight(w_q, transpose=False, rows=b)
            ic_weight = RepeatedWeight(w_ic, transpose=False, rows=b) if score is not None else None
            ds = d_s_all[t_len].to(torch.float32 if carry_f32 else dt, copy=True)
            for i in reversed(range(t_len)):
                if cell is not None:  # pipeline/fast/kernels/gru_cell.cpp
                    ds_prev = torch.empty_like(ds)
                    cell.gru_cell_backward(ds, s_all[i], rz_all[i], n_all[i], ghn_all[i], d_gi[i], d_gq[i], ds_prev)
                    ds = ds_prev
                else:
                    ds = _cell_backward(ds, s_all[i], rz_all[i], n_all[i], ghn_all[i], d_gi[i], d_gq[i, :, : 3 * hd])
                if score is not None:
                    dc = ic_weight.addmm(d_c_all[i], d_gi[i], out=d_ctx[i])  # ∂c_i: from gi and from the readout
                    ds = score.backward(i, a_all[i], dc, d_gq[i, :, 3 * hd :], ds)
                if carry_f32:
                    add_product(ds, d_gq[i], w_q)  # float32 += bf16 x bf16, by MKL
                else:
                    ds = q_weight.addmm(ds, d_gq[i])
                ds += d_s_all[i]
            ds = ds.to(dt)
            w_dtype, b_dtype, w_ic_dtype = ctx.weight_dtypes
            flat_gq, flat_s = d_gq.flatten(0, 1), s_all[:t_len].flatten(0, 1)
            grads = {"gi": d_gi, "s0": ds}
            grads["w_q"], grads["b_q"] = weight_grad(flat_gq, flat_s, w_dtype), bias_grad(flat_gq, b_dtype)
            if score is not None:
                grads["w_ic"] = weight_grad(d_gi.flatten(0, 1), c_all.flatten(0, 1), w_ic_dtype)
                grads["states"] = torch.bmm(a_all.to(dt).permute(1, 2, 0), d_ctx.transpose(0, 1))
                grads["keys"], grads["v"] = score.grads(s_all, (keys.dtype, None if v is None else v.dtype))
        names = ("gi", "s0", "w_q", "b_q", "w_ic", "keys", "states", "mask", "v")
        return (*(grads.get(name) for name in names), None, None, None, None)


def _carry_state_gradient_in_f32(cell, dtype, score) -> bool:
    """Whether the bf16 backward carries ∂s_i in float32: with the cell kernel (which reads and
    writes it so) and MKL's mixed GEMM (which adds ∂gh_i W_q into it, ~2x oneDNN's bf16 ``addmm``
    at the encoder's sizes, pipeline/fast/mixed_gemm.py).  ∂s then sums its T contributions
    without a bf16 rounding per step.  The dot scores add their own bf16 term and keep bf16."""
    return cell is not None and dtype == torch.bfloat16 and not isinstance(score, _DotScore) and mkl_available()


def _cell_kernels(like, kernels):
    """``kernels`` where the GRU cell of tensors like ``like`` can use them (CPU, fp32/bf16), else None."""
    usable = like.device.type == "cpu" and like.dtype in (torch.float32, torch.bfloat16)
    return kernels if usable else None


def _cell_forward(gi, gh, s_prev, rz_out, n_out, ghn_out, s_out):
    """[r, z] = σ(gi_rz + gh_rz), n = tanh(gi_n + r ⊙ gh_n), s = lerp(n, s_prev, z) into the ``*_out``
    tensors (gh: the first 3Hd columns are W_hh s_prev + b_hh); the kernel's torch-ops twin."""
    hd = s_prev.shape[1]
    rz = torch.sigmoid(gi[:, : 2 * hd] + gh[:, : 2 * hd], out=rz_out)
    r, z = rz.chunk(2, 1)
    gh_n = gh[:, 2 * hd : 3 * hd]
    n = torch.tanh(torch.addcmul(gi[:, 2 * hd :], r, gh_n), out=n_out)
    ghn_out.copy_(gh_n)
    torch.lerp(n, s_prev, z, out=s_out)


def _cell_backward(ds, s_prev, rz, n, gh_n, d_gi, d_gh):
    """Backward of s = lerp(n, s_prev, z), n = tanh(gi_n + r ⊙ gh_n), [r, z] = σ(gi_rz + gh_rz).

    Writes ∂gi [B, 3Hd] into ``d_gi`` and ∂gh [B, 3Hd] into ``d_gh``; returns the part of
    ∂s_{i-1} that flows through the update gate (z ⊙ ∂s_i).
    """
    hd = n.shape[1]
    r, z = rz.chunk(2, 1)
    ds_prev = ds * z
    d_n = ds - ds_prev  # (1 - z) ⊙ ∂s
    d_pre_n = d_n - d_n * n * n  # tanh'
    d_gi[:, 2 * hd :] = d_pre_n
    torch.mul(d_pre_n, r, out=d_gh[:, 2 * hd :])
    d_rz = d_gi[:, : 2 * hd]
    torch.mul(d_pre_n, gh_n, out=d_rz[:, :hd])  # ∂r
    torch.mul(ds, s_prev - n, out=d_rz[:, hd:])  # ∂z
    d_rz.mul_(rz - rz * rz)  # σ'
    d_gh[:, : 2 * hd] = d_rz
    return ds_prev


def gru_recurrence(
    gi: torch.Tensor,
    s0: torch.Tensor,
    w_q: torch.Tensor,
    b_q: torch.Tensor,
    *,
    w_ic: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    states: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
    mode: str = STATIC,
    scale: float = 1.0,
    kernels=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run a GRU over T steps, teacher-forced: (s [T+1, B, Hd] with s_0 first,
    c [T, B, C], α [T, B, S] float32); c and α are empty for ``mode="static"``.

    ``gi`` [T, B, 3Hd] is the step input's part of the GRU pre-activations (W_ie E y_{i-1} + b_ih,
    plus W_ic c for the static context); ``w_q``/``b_q`` are [W_hh ; W_a] / [b_hh ; 0] for
    the additive score and W_hh / b_hh otherwise; ``keys`` are U_a h (additive) or the
    multiplicative score's keys, ``states`` the annotations h [B, S, C], ``mask`` [B, S] bool,
    ``v`` the additive score's v_a.  Every floating tensor must share one dtype, the compute
    dtype (bf16 under autocast), except the weights ``w_q``, ``b_q`` and ``w_ic``, which may be
    the float32 parameters: they are cast inside, and their gradients come back float32,
    accumulated in float32 whatever the compute dtype.
    """
    if mode not in (ADDITIVE, DOT, STATIC):
        raise ValueError(f"unknown recurrence mode {mode!r}")
    inputs = (gi, s0, w_q, b_q, w_ic, keys, states, v)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    return _GruRecurrence.apply(gi, s0, w_q, b_q, w_ic, keys, states, mask, v, mode, float(scale), save, kernels)


class _PackedGruRecurrence(torch.autograd.Function):
    """:func:`gru_recurrence` without attention over packed sequences (:func:`packed_gru_recurrence`)."""

    @staticmethod
    def forward(ctx, gi, s0, w_hh, b_hh, batch_sizes, save, kernels):
        ctx.weight_dtypes = (w_hh.dtype, b_hh.dtype)
        with torch.autocast(gi.device.type, enabled=False):
            w, b = w_hh.to(gi.dtype), b_hh.to(gi.dtype)  # float32 master weights: cast here, gradients float32
            rows, hd = gi.shape[0], s0.shape[1]
            out, n_all, ghn_all = gi.new_empty(rows, hd), gi.new_empty(rows, hd), gi.new_empty(rows, hd)
            rz_all = gi.new_empty(rows, 2 * hd)
            weight = RepeatedWeight(w, transpose=True, rows=batch_sizes[0])  # packed for the full-width steps
            cell = _cell_kernels(gi, kernels)
            cell_forward = _cell_forward if cell is None else cell.gru_cell_forward
            s = s0
            per_step = zip(*(x.split(batch_sizes) for x in (gi, rz_all, n_all, ghn_all, out)))  # views, one split each
            for gi_t, rz_t, n_t, ghn_t, s_t in per_step:
                s_prev = _first_rows(s, len(s_t))  # the sequences still going
                cell_forward(gi_t, weight.addmm(b, s_prev), s_prev, rz_t, n_t, ghn_t, s_t)
                s = s_t
        if save:
            ctx.save_for_backward(s0, out, rz_all, n_all, ghn_all, w)
            ctx.batch_sizes, ctx.kernels = batch_sizes, kernels
        return out

    @staticmethod
    def backward(ctx, d_out):
        s0, out, rz_all, n_all, ghn_all, w = ctx.saved_tensors
        dt = out.dtype
        with torch.autocast(out.device.type, enabled=False):
            d_out = d_out.to(dt).contiguous()
            d_gi, d_gh = out.new_empty(out.shape[0], w.shape[0]), out.new_empty(out.shape[0], w.shape[0])
            cell = _cell_kernels(out, ctx.kernels)
            carry_f32 = _carry_state_gradient_in_f32(cell, dt, None)
            sizes = ctx.batch_sizes
            weight = None if carry_f32 else RepeatedWeight(w, transpose=False, rows=sizes[0])
            carry_dtype = torch.float32 if carry_f32 else dt
            ds, ds_next = (out.new_empty(sizes[0], out.shape[1], dtype=carry_dtype) for _ in range(2))
            # x_at[t]: the view of step t's packed rows of x (one split per tensor, not a slice per step)
            s_at, rz_at, n_at, ghn_at, d_gi_at, d_gh_at, upstream_at = (
                x.split(sizes) for x in (out, rz_all, n_all, ghn_all, d_gi, d_gh, d_out)
            )
            ds[: sizes[-1]] = upstream_at[-1]
            prev_states = []  # s_{t-1} of the sequences still going at step t, t = T-1 .. 1
            for t in reversed(range(len(sizes))):
                live = sizes[t]  # the sequences still going at step t: the first rows
                s_prev = _first_rows(s0 if t == 0 else s_at[t - 1], live)
                if t > 0:
                    prev_states.append(s_prev)
                d_s, d_s_prev = ds[:live], ds_next[:live]
                saved = (s_prev, rz_at[t], n_at[t], ghn_at[t], d_gi_at[t], d_gh_at[t])
                if cell is not None:  # pipeline/fast/kernels/gru_cell.cpp
                    cell.gru_cell_backward(d_s, *saved, d_s_prev)
                else:
                    d_s_prev.copy_(_cell_backward(d_s, *saved))
                if t == 0 and not ctx.needs_input_grad[1]:
                    break  # ∂s0 through W_hh: not needed (the encoder starts from zeros)
                if carry_f32:
                    add_product(d_s_prev, d_gh_at[t], w)  # float32 += bf16 x bf16, by MKL
                else:
                    weight.addmm(d_s_prev, d_gh_at[t], out=d_s_prev)
                if t > 0:  # s_{t-1}'s own upstream gradient; the sequences that ended at t-1 start here
                    upstream = upstream_at[t - 1]
                    d_s_prev += _first_rows(upstream, live)
                    if len(upstream) > live:
                        ds_next[live : len(upstream)] = upstream[live:]
                ds, ds_next = ds_next, ds
            w_dtype, b_dtype = ctx.weight_dtypes
            # s_{t-1} of every packed row, in d_gh's row order: a copy of N x Hd, small next to the GEMM
            s_prev_all = torch.cat([s0, *reversed(prev_states)])
            d_w = weight_grad(d_gh, s_prev_all, w_dtype)
            d_b = bias_grad(d_gh, b_dtype)
        d_s0 = ds.to(dt) if ctx.needs_input_grad[1] else None  # after the last swap, ds holds ∂s0 (all rows)
        return d_gi, d_s0, d_w, d_b, None, None, None


def _first_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x[:rows]``, without a new view where that is all of ``x`` (the per-step Python adds up)."""
    return x if len(x) == rows else x[:rows]


def packed_gru_recurrence(
    gi: torch.Tensor, s0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, batch_sizes: list[int], kernels=None
) -> torch.Tensor:
    """A GRU over packed sequences: the states s_t of every real position, packed as ``gi`` [N, Hd].

    ``gi`` [N, 3Hd] is W_ih x_t + b_ih in the layout of a :class:`torch.nn.utils.rnn.PackedSequence`'s
    data: step t holds ``batch_sizes[t]`` rows (non-increasing), the sequences sorted longest
    first, so the sequences still going at step t are the first rows of step t-1.  ``s0`` is
    [batch_sizes[0], Hd].  Why packed: the encoder's batches are sorted by target length and
    carry ~12% source padding (Multi30k, 4096-token batches); each step here runs only the
    sequences still going, so no product, gate or gradient is spent on padding, while the weight
    gradients stay one GEMM over all N rows.  Dtypes as in :func:`gru_recurrence`.
    """
    save = torch.is_grad_enabled() and any(t.requires_grad for t in (gi, s0, w_hh, b_hh))
    return _PackedGruRecurrence.apply(gi, s0, w_hh, b_hh, list(batch_sizes), save, kernels)
