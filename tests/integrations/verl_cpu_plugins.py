"""Test-only verl plugins for the ``main_ppo`` runs of ``test_verl_main_ppo.py``, loaded in every
verl process through ``VERL_USE_EXTERNAL_MODULES`` (see ``verl_cpu_run.environment``):

- a recorder around :func:`aem.integrations.verl.v1.modulate_stored_advantages`, the step the
  ``aem_sync`` trainer runs after verl's advantage estimator: for every batch it saves what verl
  stored (``uid``, ``response_mask``, ``entropy``, ``advantages``, the padding tags), the
  ``advantages`` AEM wrote back and the ``aem/*`` metrics, to ``$AEM_VERL_DUMP_DIR/batch_<n>.pt``
  (only when that variable is set);
- agent loop ``aem_multi_turn_test``: each session is 2 or 3 assistant turns in one row, with
  observation tokens between them (0 in ``response_mask``), as verl's tool agent loop makes.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import torch
import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register

from aem.integrations.verl import v1
from aem.integrations.verl.core import AEMConfig

MULTI_TURN_AGENT = "aem_multi_turn_test"
TOKENS_PER_TURN = 4


def _stored(batch: KVBatchMeta, fields: list[str]) -> dict[str, Any]:
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
    padded = data.to_padded_tensor()
    out: dict[str, Any] = {name: padded[name].clone() for name in fields if name != "uid"}
    if "uid" in fields:
        out["uid"] = list(padded.get("uid").tolist())
    return out


def _recorded(modulate: Any) -> Any:
    @functools.wraps(modulate)
    def modulate_and_record(
        batch: KVBatchMeta, config: AEMConfig, metrics: dict[str, Any]
    ) -> KVBatchMeta:
        record = _stored(batch, ["uid", "response_mask", "entropy", "advantages"])
        written = modulate(batch, config, metrics)
        record["advantages_after"] = _stored(written, ["advantages"])["advantages"]
        record["is_padding"] = [bool(tag.get("is_padding", False)) for tag in batch.tags]
        record["aem_metrics"] = {k: v for k, v in metrics.items() if k.startswith("aem/")}
        record["config"] = config
        folder = Path(os.environ["AEM_VERL_DUMP_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(record, folder / f"batch_{len(list(folder.glob('batch_*.pt')))}.pt")
        return written

    return modulate_and_record


if os.environ.get("AEM_VERL_DUMP_DIR"):
    v1.modulate_stored_advantages = _recorded(v1.modulate_stored_advantages)


@register(MULTI_TURN_AGENT)
class MultiTurnTestAgentLoop(AgentLoopBase):
    """2 or 3 model turns of at most ``TOKENS_PER_TURN`` tokens in one row; before every turn
    but the first, an observation the policy did not generate (mask 0). The number of turns
    follows the parity of the first sampled token, so sessions of one prompt differ."""

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        prompt_ids = await self.ct_build_initial_tokens(list(kwargs["raw_prompt"]))
        response_ids: list[int] = []
        response_mask: list[int] = []
        log_probs: list[float] = []
        extra_fields: dict[str, Any] = {"turn_scores": [], "tool_rewards": []}
        turns = 2
        turn = 0
        while turn < turns:
            if turn:
                observation = self.tokenizer.encode(
                    f"\nyou see {'a mug' if turn == 1 else 'nothing'}\n", add_special_tokens=False
                )
                response_ids += observation
                response_mask += [0] * len(observation)
                log_probs += [0.0] * len(observation)
            output = await self.server_manager.generate(
                request_id=uuid4().hex,
                prompt_ids=prompt_ids + response_ids,
                sampling_params={**sampling_params, "max_tokens": TOKENS_PER_TURN},
            )
            response_ids += output.token_ids
            response_mask += [1] * len(output.token_ids)
            log_probs += output.log_probs or [0.0] * len(output.token_ids)
            if turn == 0:
                turns = 2 + output.token_ids[0] % 2
                extra_fields["min_global_steps"] = output.extra_fields.get("min_global_steps")
            extra_fields["max_global_steps"] = output.extra_fields.get("max_global_steps")
            turn += 1
        length = self.rollout_config.response_length
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids[:length],
            response_mask=response_mask[:length],
            response_logprobs=log_probs[:length],
            num_turns=2 * turns,
            metrics={},
            extra_fields=extra_fields,
        )
