"""The PPO critic: a causal-LM body with a linear head to one scalar value per token."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel, PreTrainedModel

from aem.policy.rows import check_token_batch, last_hidden_state

VALUE_HEAD_FILE = "value_head.safetensors"


class ValueHead(nn.Module):
    """``Linear(hidden_size, 1)`` computed in fp32; weights ~ N(0, init_std^2), bias 0."""

    def __init__(self, hidden_size: int, init_std: float = 0.02, seed: int = 0) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(self.linear.weight.shape, generator=generator))
            self.linear.weight.mul_(init_std)
            self.linear.bias.zero_()

    def forward(self, hidden: Tensor) -> Tensor:
        """``hidden [..., H] -> values [...]`` in fp32."""
        return nn.functional.linear(
            hidden.float(), self.linear.weight.float(), self.linear.bias.float()
        ).squeeze(-1)


class CriticModel(nn.Module):
    """A transformer body (e.g. ``Qwen2Model``) plus a :class:`ValueHead`.

    ``values[:, t]`` is the value of the state in which token ``t`` is chosen, read from the
    body's hidden state at ``t - 1``: it lines up with ``ScoreOutput.log_probs[:, t]`` (verl
    takes ``values[:, -R-1:-1]`` for the same alignment). Column 0, padded tokens and a
    row's first real token (no state before it) get 0.
    """

    def __init__(self, body: PreTrainedModel, head: ValueHead) -> None:
        super().__init__()
        self.body = body
        self.head = head

    @classmethod
    def from_causal_lm(cls, model: PreTrainedModel, seed: int = 0) -> CriticModel:
        """A critic whose body is an independent copy of ``model``'s body (the LM head is
        dropped), e.g. initialised from the policy as in PPO for LLMs."""
        body = copy.deepcopy(model.base_model)
        std = float(getattr(model.config, "initializer_range", 0.02))
        return cls(body, ValueHead(body.config.hidden_size, init_std=std, seed=seed))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], seed: int = 0) -> CriticModel:
        """Load a body from any checkpoint ``AutoModel`` reads (a causal-LM checkpoint gives its
        body) and the value head from ``value_head.safetensors`` if present, else a fresh head."""
        body = AutoModel.from_pretrained(path)
        std = float(getattr(body.config, "initializer_range", 0.02))
        head = ValueHead(body.config.hidden_size, init_std=std, seed=seed)
        head_file = Path(path) / VALUE_HEAD_FILE
        if head_file.exists():
            state = load_file(head_file)
            head.linear.load_state_dict({"weight": state["weight"], "bias": state["bias"]})
        return cls(body, head)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Save the body (``save_pretrained``) and the head (``value_head.safetensors``)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self.body.save_pretrained(directory)
        head_state = {
            name: value.detach().contiguous()
            for name, value in self.head.linear.state_dict().items()
        }
        save_file(head_state, directory / VALUE_HEAD_FILE)
        return directory

    def values(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Per-token values ``[B, T]`` (fp32), aligned as described on the class. The trainer
        runs the critic through :class:`aem.policy.runner.CriticRunner` (precision, compiled
        body)."""
        check_token_batch(input_ids, attention_mask)
        return self.values_from_hidden(
            last_hidden_state(self.body, input_ids, attention_mask), attention_mask
        )

    def values_from_hidden(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """:meth:`values` from the body's last hidden states ``hidden [B, T, H]``."""
        state_values = self.head(hidden[:, :-1])
        has_state = (attention_mask[:, 1:] * attention_mask[:, :-1]).to(state_values.dtype)
        state_values = state_values * has_state
        return torch.cat([state_values.new_zeros(state_values.shape[0], 1), state_values], 1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Same as :meth:`values` (fp32, no autocast)."""
        return self.values(input_ids, attention_mask)
