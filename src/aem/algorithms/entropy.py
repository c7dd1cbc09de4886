"""Per-token log-prob of the sampled token and full-vocabulary entropy from one set of logits.

AEM needs, for every response token, the token entropy of Eq. (5),
``H(pi(.|s, y_<t)) = -sum_v pi(v|s, y_<t) log pi(v|s, y_<t)``, whose average over a response is the
response-level proxy of Eq. (13). The trainer already scores every token with the policy to get
``log pi(y_t|s, y_<t)`` for the loss, so the entropy is taken from the same logits and AEM needs no
extra forward pass.

Both quantities come from one pass over each row of logits ``z = logits / temperature``:
with ``m = max_v z_v``, ``e_v = exp(z_v - m)`` and ``s = sum_v e_v``::

    log pi(y)  = (z_y - m) - log s
    H          = log s - sum_v e_v (z_v - m) / s      (= logsumexp(z) - E_pi[z])

so the entropy costs one extra multiply-accumulate over the exponentials the log-prob needs anyway.
Before the exponential, ``z_v - m`` is floored at ``log(smallest normal float)`` (about -87 in
fp32): CPU ``exp`` is 10-80x slower when it returns denormals or takes ``-inf``, and wide LLM
logits produce both. An entry below the floor has a true probability under ``1e-38`` and enters
the normaliser and entropy with that weight at most, which changes no fp32 output, while the
gathered ``log pi(y)`` is taken before flooring and stays exact. So ``-inf`` logits (masked
vocabulary, e.g. top-k filtering) are allowed: the entropy stays finite (no ``0 * -inf``), a
masked label gets ``-inf``, and backward gives masked entries an exact zero gradient. Each row
needs at least one finite logit; ``+inf`` or NaN logits give NaN.

Rows are processed in blocks (cache-sized on CPU, a few hundred MB on accelerators) with fp32
(fp64 for fp64 inputs) work buffers, so bf16/fp16 logits never get a full fp32 copy. Gradients are
computed by custom autograd functions that recompute each block from the saved logits instead of
storing fp32 intermediates:

    d log pi(y) / d z_v = [v = y] - pi_v,        d H / d z_v = -pi_v (log pi_v + H).

``chunked_logprobs_and_entropy`` starts from the last hidden states and the LM head and also
recomputes each token chunk's logits in backward, so neither pass ever holds logits for the whole
batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from aem.checks import (
    checking_values,
    compute_dtype,
    require_int_at_least,
    require_integer,
    require_positive,
    require_shape,
    require_tensor,
)

__all__ = [
    "chunked_logprobs_and_entropy",
    "logprobs_and_entropy",
    "logprobs_from_logits",
]

# Elements of all work buffers of one block of logit rows together: on CPU about 1 MB of fp32 per
# intra-op thread so that the exp / multiply / sum passes stay in L2 (measured best on a 2 MB-L2
# Xeon), on accelerators large enough to amortise kernel launches while bounding memory.
_CPU_BLOCK_ELEMENTS = 1 << 18
_ACCELERATOR_BLOCK_ELEMENTS = 1 << 27


def _block_rows(n_rows: int, vocab_size: int, device: torch.device, n_buffers: int) -> int:
    if device.type == "cpu":  # each intra-op thread works on its own share in its own L2
        budget = _CPU_BLOCK_ELEMENTS * torch.get_num_threads()
    else:
        budget = _ACCELERATOR_BLOCK_ELEMENTS
    return max(1, min(n_rows, budget // (n_buffers * max(1, vocab_size))))


def _exp_floor(dtype: torch.dtype) -> float:
    """Smallest argument whose ``exp`` is still a normal number of ``dtype``."""
    return math.log(torch.finfo(dtype).tiny) + 0.5


# --------------------------------------------------------------------------------------------------
# Row kernels on 2-D logits [N, V] (no autograd inside).
# --------------------------------------------------------------------------------------------------


def _row_stats(
    logits: Tensor, labels: Tensor, inv_temperature: float, with_entropy: bool
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Return ``(logprob, entropy | None, row_max, log_norm)`` for every row of ``logits``.

    ``row_max`` is ``max_v logits`` (unscaled) and ``log_norm`` is ``log sum_v exp(z_v - m)``
    with ``z = logits * inv_temperature``; backward uses them to rebuild ``log pi`` exactly.
    """
    n_rows, vocab = logits.shape
    dtype = compute_dtype(logits.dtype)
    block = _block_rows(n_rows, vocab, logits.device, n_buffers=2 if with_entropy else 1)
    # Per-row statistics as [N, 1] columns, written in place by each block (few ops per block:
    # on CPU the blocks are small and Python/dispatch overhead matters).
    per_row = torch.empty(4 if with_entropy else 3, n_rows, 1, dtype=dtype, device=logits.device)
    row_max, label_shifted, norm = per_row[0], per_row[1], per_row[2]
    weighted = per_row[3] if with_entropy else None
    labels_column = labels[:, None]
    shifted_buf = torch.empty(block, vocab, dtype=dtype, device=logits.device)
    exp_buf = torch.empty_like(shifted_buf) if with_entropy else None
    floor = _exp_floor(dtype)
    for start in range(0, n_rows, block):
        rows = slice(start, min(start + block, n_rows))
        shifted = shifted_buf[: rows.stop - start]
        shifted.copy_(logits[rows])
        torch.amax(shifted, dim=-1, keepdim=True, out=row_max[rows])
        shifted.sub_(row_max[rows])
        if inv_temperature != 1.0:
            shifted.mul_(inv_temperature)
        torch.gather(shifted, -1, labels_column[rows], out=label_shifted[rows])
        shifted.clamp_(min=floor)
        if weighted is None:
            torch.sum(shifted.exp_(), dim=-1, keepdim=True, out=norm[rows])
        else:
            exps = torch.exp(shifted, out=exp_buf[: rows.stop - start])
            torch.sum(exps, dim=-1, keepdim=True, out=norm[rows])
            torch.sum(exps.mul_(shifted), dim=-1, keepdim=True, out=weighted[rows])
    log_norm = norm.log().squeeze(-1)
    logprob = label_shifted.squeeze(-1) - log_norm
    entropy = None
    if weighted is not None:
        entropy = (log_norm - (weighted / norm).squeeze(-1)).clamp_(min=0.0)
    return logprob, entropy, row_max.squeeze(-1), log_norm


def _row_grad(
    logits: Tensor,
    labels: Tensor,
    inv_temperature: float,
    row_max: Tensor,
    log_norm: Tensor,
    entropy: Tensor | None,
    grad_logprob: Tensor | None,
    grad_entropy: Tensor | None,
    overwrite_logits: bool = False,
) -> Tensor:
    """Gradient w.r.t. ``logits`` (in ``logits.dtype``) of ``sum(g_lp * logprob + g_H * H)``.

    With ``overwrite_logits`` the gradient is written into ``logits`` itself (each block is read
    into a work buffer before its rows are overwritten), saving one logits-sized allocation.
    """
    n_rows, vocab = logits.shape
    dtype = compute_dtype(logits.dtype)
    block = _block_rows(n_rows, vocab, logits.device, n_buffers=2)
    grad_logits = logits if overwrite_logits else torch.empty_like(logits)
    logp_buf = torch.empty(block, vocab, dtype=dtype, device=logits.device)
    prob_buf = torch.empty_like(logp_buf)
    floor = _exp_floor(dtype)
    zero_below = 2.0 * math.exp(floor)  # margin for the rounding of exp at the floor
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        rows = slice(start, stop)
        # log pi_v floored as in forward (finite, fast exp); probabilities at the floor are set to
        # exactly 0 so that masked (-inf) logits get a zero gradient.
        logp = logp_buf[: stop - start]
        logp.copy_(logits[rows])
        logp.sub_(row_max[rows, None]).mul_(inv_temperature).sub_(log_norm[rows, None])
        logp.clamp_(min=floor)
        prob = F.threshold_(torch.exp(logp, out=prob_buf[: stop - start]), zero_below, 0.0)
        if grad_entropy is not None and entropy is not None:
            # dH/dz_v = -pi_v (log pi_v + H)
            grad_z = logp.add_(entropy[rows, None]).mul_(prob).mul_(-grad_entropy[rows, None])
            if grad_logprob is not None:
                grad_z.addcmul_(prob, grad_logprob[rows, None], value=-1.0)
        else:
            grad_z = prob.mul_(-grad_logprob[rows, None])
        if grad_logprob is not None:
            # d log pi(y)/dz_v = [v = y] - pi_v: add the indicator part.
            grad_z.scatter_add_(-1, labels[rows, None], grad_logprob[rows, None])
        grad_logits[rows] = grad_z.mul_(inv_temperature)
    return grad_logits


class _LogitsStats(torch.autograd.Function):
    """``(logprob, entropy)`` of 2-D logits with a recomputing backward."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        logits: Tensor,
        labels: Tensor,
        inv_temperature: float,
        with_entropy: bool,
    ) -> tuple[Tensor, Tensor | None]:
        logprob, entropy, row_max, log_norm = _row_stats(
            logits, labels, inv_temperature, with_entropy
        )
        ctx.set_materialize_grads(False)
        ctx.inv_temperature = inv_temperature
        ctx.with_entropy = with_entropy
        saved_entropy = entropy if entropy is not None else row_max.new_empty(0)
        ctx.save_for_backward(logits, labels, row_max, log_norm, saved_entropy)
        return logprob, entropy

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad_logprob: Tensor | None, grad_entropy: Tensor | None
    ) -> tuple[Tensor | None, None, None, None]:
        if grad_logprob is None and grad_entropy is None:
            return None, None, None, None
        logits, labels, row_max, log_norm, saved_entropy = ctx.saved_tensors
        entropy = saved_entropy if ctx.with_entropy else None
        grad_logits = _row_grad(
            logits,
            labels,
            ctx.inv_temperature,
            row_max,
            log_norm,
            entropy,
            grad_logprob,
            grad_entropy,
        )
        return grad_logits, None, None, None


class _ChunkedHeadStats(torch.autograd.Function):
    """``(logprob, entropy)`` of ``hidden @ W.T + b`` computed chunk by chunk over tokens."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        labels: Tensor,
        inv_temperature: float,
        chunk_size: int,
        with_entropy: bool,
    ) -> tuple[Tensor, Tensor | None]:
        n_tokens = hidden.shape[0]
        dtype = compute_dtype(hidden, weight)
        logprob = torch.empty(n_tokens, dtype=dtype, device=hidden.device)
        entropy = torch.empty_like(logprob) if with_entropy else None
        row_max = torch.empty_like(logprob)
        log_norm = torch.empty_like(logprob)
        for start in range(0, n_tokens, chunk_size):
            chunk = slice(start, min(start + chunk_size, n_tokens))
            logits = F.linear(hidden[chunk], weight, bias)
            stats = _row_stats(logits, labels[chunk], inv_temperature, with_entropy)
            del logits  # free before the next chunk's logits are allocated
            logprob[chunk], chunk_entropy, row_max[chunk], log_norm[chunk] = stats
            if entropy is not None:
                entropy[chunk] = chunk_entropy
        ctx.set_materialize_grads(False)
        ctx.inv_temperature = inv_temperature
        ctx.chunk_size = chunk_size
        ctx.with_entropy = with_entropy
        ctx.has_bias = bias is not None
        saved_entropy = entropy if entropy is not None else row_max.new_empty(0)
        saved_bias = bias if bias is not None else weight.new_empty(0)
        ctx.save_for_backward(hidden, weight, saved_bias, labels, row_max, log_norm, saved_entropy)
        return logprob, entropy

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad_logprob: Tensor | None, grad_entropy: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        hidden, weight, saved_bias, labels, row_max, log_norm, saved_entropy = ctx.saved_tensors
        bias = saved_bias if ctx.has_bias else None
        entropy = saved_entropy if ctx.with_entropy else None
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        if grad_logprob is None and grad_entropy is None:
            return None, None, None, None, None, None, None
        # Accumulate the head gradients over chunks in at least fp32.
        acc_dtype = compute_dtype(weight.dtype)
        device = weight.device
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=acc_dtype, device=device) if need_weight else None
        )
        grad_bias = (
            torch.zeros(weight.shape[0], dtype=acc_dtype, device=device) if need_bias else None
        )
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            chunk = slice(start, min(start + ctx.chunk_size, hidden.shape[0]))
            grad_logits = _row_grad(
                F.linear(hidden[chunk], weight, bias),
                labels[chunk],
                ctx.inv_temperature,
                row_max[chunk],
                log_norm[chunk],
                entropy[chunk] if entropy is not None else None,
                grad_logprob[chunk] if grad_logprob is not None else None,
                grad_entropy[chunk] if grad_entropy is not None else None,
                overwrite_logits=True,  # the recomputed chunk logits are not needed afterwards
            )
            if grad_hidden is not None:
                torch.mm(grad_logits, weight, out=grad_hidden[chunk])
            if grad_weight is not None:
                if grad_weight.dtype == grad_logits.dtype:
                    grad_weight.addmm_(grad_logits.T, hidden[chunk])
                else:  # low-precision head: chunk product in its dtype, sum over chunks in fp32
                    grad_weight.add_(grad_logits.T @ hidden[chunk])
            if grad_bias is not None:
                grad_bias.add_(grad_logits.sum(dim=0))
            del grad_logits
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(weight.dtype) if grad_bias is not None else None,
            None,
            None,
            None,
            None,
        )


# --------------------------------------------------------------------------------------------------
# Argument checks.
# --------------------------------------------------------------------------------------------------


def _check_float(name: str, value: object) -> Tensor:
    tensor = require_tensor(name, value)
    if not tensor.dtype.is_floating_point:
        raise ValueError(f"{name} must have a floating dtype, got {tensor.dtype}")
    if tensor.dim() < 1:
        raise ValueError(f"{name} must have at least 1 dimension, got shape {tuple(tensor.shape)}")
    return tensor


def _check_labels(
    labels: object, leading_shape: torch.Size, vocab_size: int, device: torch.device
) -> Tensor:
    tensor = require_tensor("labels", labels)
    require_integer("labels", tensor)
    require_shape("labels", tensor, leading_shape)
    if tensor.device != device:
        raise ValueError(f"labels must be on {device}, got {tensor.device}")
    if tensor.numel() > 0 and checking_values():
        low, high = int(tensor.min()), int(tensor.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"labels must lie in [0, {vocab_size}), got {bad}")
    return tensor.reshape(-1).long()


def _inverse_temperature(temperature: float) -> float:
    require_positive("temperature", temperature)
    return 1.0 / float(temperature)


def _check_logits_and_labels(logits: object, labels: object) -> tuple[Tensor, Tensor]:
    logits_t = _check_float("logits", logits)
    vocab_size = logits_t.shape[-1]
    if vocab_size == 0:
        raise ValueError(
            f"logits must have a non-empty vocabulary dimension, got {tuple(logits_t.shape)}"
        )
    labels_flat = _check_labels(labels, logits_t.shape[:-1], vocab_size, logits_t.device)
    return logits_t.reshape(-1, vocab_size), labels_flat


# --------------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------------


def logprobs_from_logits(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """Log-probability ``log pi(labels)`` under ``softmax(logits / temperature)``.

    Args:
        logits: ``[..., V]`` scores of any float dtype (bf16/fp16 are computed in fp32).
        labels: ``[...]`` integer token ids in ``[0, V)``.
        temperature: sampling temperature ``> 0`` the tokens were drawn with.

    Returns:
        ``[...]`` fp32 log-probabilities (fp64 for fp64 logits); differentiable w.r.t. ``logits``.
    """
    inv_temperature = _inverse_temperature(temperature)
    logits_2d, labels_flat = _check_logits_and_labels(logits, labels)
    logprob, _ = _LogitsStats.apply(logits_2d, labels_flat, inv_temperature, False)
    return logprob.reshape(logits.shape[:-1])


def logprobs_and_entropy(
    logits: Tensor, labels: Tensor, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Log-probability of ``labels`` and token entropy, both from one pass over ``logits``.

    The entropy is the token-level entropy ``H(pi(.|s, y_<t))`` of Eq. (5) over the full vocabulary
    of ``pi = softmax(logits / temperature)``; its mean over a response is the AEM proxy of
    Eq. (13). ``-inf`` logits (masked vocabulary) are allowed and contribute zero.

    Args:
        logits: ``[..., V]`` scores of any float dtype (bf16/fp16 are computed in fp32).
        labels: ``[...]`` integer token ids in ``[0, V)``.
        temperature: sampling temperature ``> 0``.

    Returns:
        ``(logprob, entropy)``, each ``[...]`` fp32 (fp64 for fp64 logits), differentiable w.r.t.
        ``logits``.
    """
    inv_temperature = _inverse_temperature(temperature)
    logits_2d, labels_flat = _check_logits_and_labels(logits, labels)
    logprob, entropy = _LogitsStats.apply(logits_2d, labels_flat, inv_temperature, True)
    leading = logits.shape[:-1]
    return logprob.reshape(leading), entropy.reshape(leading)


def chunked_logprobs_and_entropy(
    hidden: Tensor,
    lm_head_weight: Tensor,
    labels: Tensor,
    temperature: float = 1.0,
    lm_head_bias: Tensor | None = None,
    chunk_size: int = 1024,
    compute_entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs and token entropies (Eq. (5)) of ``hidden @ lm_head_weight.T + lm_head_bias``.

    The flattened tokens are processed ``chunk_size`` at a time, so the logits of at most one
    chunk exist at any moment, in forward and in backward (which recomputes each chunk's logits).
    Gradients w.r.t. ``hidden``, ``lm_head_weight`` and ``lm_head_bias`` equal those of the
    unchunked computation; the head gradients are accumulated over chunks in fp32.

    Args:
        hidden: ``[..., D]`` final hidden states.
        lm_head_weight: ``[V, D]`` output embedding, same dtype and device as ``hidden``.
        labels: ``[...]`` integer token ids in ``[0, V)``.
        temperature: sampling temperature ``> 0``.
        lm_head_bias: optional ``[V]`` output bias.
        chunk_size: number of tokens per chunk (``> 0``).
        compute_entropy: if False, skip the entropy and return ``None`` in its place.

    Returns:
        ``(logprob, entropy | None)``, each ``[...]`` fp32 (fp64 for fp64 inputs).
    """
    inv_temperature = _inverse_temperature(temperature)
    hidden_t = _check_float("hidden", hidden)
    weight = _check_float("lm_head_weight", lm_head_weight)
    model_dim = hidden_t.shape[-1]
    if weight.dim() != 2 or weight.shape[1] != model_dim or weight.shape[0] == 0:
        raise ValueError(
            f"lm_head_weight must have shape [V, {model_dim}] with V > 0, got {tuple(weight.shape)}"
        )
    if weight.dtype != hidden_t.dtype or weight.device != hidden_t.device:
        raise ValueError(
            f"lm_head_weight must match hidden ({hidden_t.dtype}, {hidden_t.device}), "
            f"got ({weight.dtype}, {weight.device})"
        )
    vocab_size = weight.shape[0]
    if lm_head_bias is not None:
        bias = _check_float("lm_head_bias", lm_head_bias)
        require_shape("lm_head_bias", bias, (vocab_size,))
        if bias.dtype != weight.dtype or bias.device != weight.device:
            raise ValueError(
                f"lm_head_bias must match lm_head_weight ({weight.dtype}, {weight.device}), "
                f"got ({bias.dtype}, {bias.device})"
            )
    require_int_at_least("chunk_size", chunk_size, 1)
    labels_flat = _check_labels(labels, hidden_t.shape[:-1], vocab_size, hidden_t.device)
    logprob, entropy = _ChunkedHeadStats.apply(
        hidden_t.reshape(-1, model_dim),
        weight,
        lm_head_bias,
        labels_flat,
        inv_temperature,
        chunk_size,
        bool(compute_entropy),
    )
    leading = hidden_t.shape[:-1]
    return logprob.reshape(leading), entropy.reshape(leading) if entropy is not None else None
