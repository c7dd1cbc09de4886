"""How the trainer runs its models over token rows: :class:`PolicyRunner` (a causal LM: scoring
and the sampling settings) and :class:`CriticRunner` (a :class:`~aem.policy.value.CriticModel`:
values).

A runner owns its module, the module's optional compiled body (``model.compile``), the precision
(bfloat16 autocast) and, for a policy, the sampling temperature, so callers pass token rows and
nothing else. The compiled body is a ``torch.compile(dynamic=True)`` *wrapper* of the module's
body: the module itself is untouched (plain state dict keys, checkpoints, ``save_pretrained``,
resume), and the sampler, which calls the module directly with a KV cache, stays eager. Shapes
are dynamic, so rows of any count and length reuse one graph per case: no grad / grad (train),
frozen parameters (the reference), with or without an attention mask, and batches above or below
4,096 tokens in training (inductor's CPU code for long float sums differs). A single row runs
eagerly (torch specialises a size of 1: it would compile another graph for a cheap case), and
the compiled body gets fresh contiguous ids (it guards on strides and views, so crops and
selections would each compile a graph).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from aem.policy.rows import last_hidden_state
from aem.policy.sampling import SamplingConfig
from aem.policy.scoring import ScoreOutput, check_plain_head, score_hidden
from aem.policy.value import CriticModel

RECOMPILE_LIMIT = 16
"""Graphs one body's code may compile before torch runs new cases eagerly: the cases above, with
bf16 autocast on or off, make more than torch's default limit of 8."""

MIN_TEMPERATURE = 1e-6
"""Scoring divides the logits by the sampling temperature, floored here (greedy sampling, at
temperature 0, is scored as the limit)."""


def compile_body(body: nn.Module) -> nn.Module:
    """``torch.compile(body, dynamic=True)``: a wrapper that runs ``body``'s weights (they train
    and load as usual). The first call in each mode compiles (tens of seconds on CPU)."""
    import torch._dynamo

    if not isinstance(body, nn.Module):
        raise ValueError(f"body must be a torch.nn.Module, got {type(body).__name__}")
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(body, dynamic=True)


class _Runner:
    """A module whose ``body`` runs over token rows, eagerly or compiled, in its precision."""

    def __init__(self, module: nn.Module, body: nn.Module, bf16: bool, compile: bool) -> None:
        self.module = module
        self.bf16 = bool(bf16)
        self._body = body
        self.compiled_body = compile_body(body) if compile else None

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The body's last hidden states ``[B, T, H]`` for the rows ``input_ids``."""
        if self.compiled_body is None or input_ids.shape[0] == 1:
            return last_hidden_state(self._body, input_ids, attention_mask, self.bf16)
        ids = input_ids.clone(memory_format=torch.contiguous_format)
        return last_hidden_state(self.compiled_body, ids, attention_mask, self.bf16)

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def eval(self) -> None:
        self.module.eval()


class PolicyRunner(_Runner):
    """A causal LM with its compiled body, precision and sampling temperature.

    ``score`` gives the log-probs and entropies of given tokens at the sampling temperature
    (:func:`aem.policy.scoring.score`; with grad when grad mode is on); ``sampling`` the sampler
    settings of the same temperature and precision.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        temperature: float = 1.0,
        bf16: bool = False,
        compile: bool = False,
    ) -> None:
        if not temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        check_plain_head(model)
        super().__init__(model, model.base_model, bf16, compile)
        self.model = model
        self.temperature = float(temperature)

    @property
    def score_temperature(self) -> float:
        """The temperature scoring divides the logits by (:data:`MIN_TEMPERATURE` at least)."""
        return max(self.temperature, MIN_TEMPERATURE)

    def score(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        response_mask: Tensor,
        compute_entropy: bool = True,
    ) -> ScoreOutput:
        """Log-probs (and entropies) ``[B, T]`` of the tokens ``response_mask`` marks, for rows
        built by :class:`aem.batch.SpanBatch` (their checks are done there)."""
        hidden = self.hidden_states(input_ids, attention_mask)
        return score_hidden(
            self.model,
            hidden,
            input_ids,
            response_mask,
            self.score_temperature,
            compute_entropy=compute_entropy,
            bf16=self.bf16,
        )

    def sampling(self, temperature: float | None = None, **settings: object) -> SamplingConfig:
        """:class:`SamplingConfig` at this runner's temperature (or ``temperature``) and
        precision; ``settings`` are its other fields (``max_new_tokens``, ``top_p``, stops)."""
        chosen = self.temperature if temperature is None else temperature
        return SamplingConfig(temperature=chosen, bf16=self.bf16, **settings)  # type: ignore[arg-type]


class CriticRunner(_Runner):
    """A :class:`CriticModel` with its compiled body and precision."""

    def __init__(self, critic: CriticModel, bf16: bool = False, compile: bool = False) -> None:
        super().__init__(critic, critic.body, bf16, compile)
        self.critic = critic

    def values(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Per-token values ``[B, T]`` (:meth:`CriticModel.values`)."""
        hidden = self.hidden_states(input_ids, attention_mask)
        return self.critic.values_from_hidden(hidden, attention_mask)
