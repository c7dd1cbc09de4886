"""Opt-in ``torch.compile`` of a model body for the scoring pass and the update (``model.compile``).

:func:`compile_body` returns a compiled *wrapper* of the body and leaves the module itself
untouched: its state dict keeps plain keys (no ``_orig_mod.``), so checkpoints, resume and
``save_pretrained`` are unaffected, and the sampler (KV cache, a few tokens per call), which calls
the module directly, stays eager. Callers pass the wrapper where they would run the body
(``score(..., body=...)``). Shapes are dynamic, so rows of any count and length reuse one graph per
case: no grad / grad (train), the frozen reference's parameters (which require no grad), with or
without an attention mask, and in training batches above or below 4,096 tokens (inductor's CPU code
for long float sums differs). A single row runs eagerly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aem.policy.batching import body_inputs

# Graphs one body's code may compile before torch runs new cases eagerly: the cases above, with
# bf16 autocast on or off, make more than the default limit of 8.
RECOMPILE_LIMIT = 16


def compile_body(body: nn.Module) -> nn.Module:
    """``torch.compile(body, dynamic=True)``: a wrapper that runs ``body``'s weights (they train
    and load as usual). The first call in each mode compiles (tens of seconds on CPU)."""
    import torch._dynamo

    if not isinstance(body, nn.Module):
        raise ValueError(f"body must be a torch.nn.Module, got {type(body).__name__}")
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(body, dynamic=True)


def body_of(module: nn.Module, body: nn.Module | None, rows: int) -> nn.Module:
    """What runs ``rows`` rows through ``module``: ``body`` (``module`` itself or a
    :func:`compile_body` wrapper of it), or ``module`` when ``body`` is None or for a single row
    (torch specialises a size of 1: it would compile another graph for it, a single row is cheap
    eagerly). A body of another module is refused (it would run other weights)."""
    if body is None:
        return module
    if getattr(body, "_orig_mod", body) is not module:
        raise ValueError(
            f"body must be the model's own body ({type(module).__name__}) or compile_body of it, "
            f"got a {type(getattr(body, '_orig_mod', body)).__name__} of another model"
        )
    return module if rows == 1 else body


def fresh(tensor: Tensor) -> Tensor:
    """A contiguous copy that is no view: a compiled body guards on an input's strides and on
    whether it is a view (of what size), so crops and selections would each compile a graph."""
    return tensor.clone(memory_format=torch.contiguous_format)


def last_hidden_state(
    module: nn.Module, body: nn.Module | None, input_ids: Tensor, attention_mask: Tensor
) -> Tensor:
    """``module``'s last hidden states for a token batch, run by :func:`body_of` (``body`` when it
    applies, else ``module`` eagerly); only the compiled body gets :func:`fresh` ids."""
    run = body_of(module, body, input_ids.shape[0])
    ids = input_ids if run is module else fresh(input_ids)
    return run(input_ids=ids, **body_inputs(attention_mask)).last_hidden_state
