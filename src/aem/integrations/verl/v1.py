"""AEM in verl's V1 trainer (the default in verl 0.9): trainer mode ``aem_sync``.

verl's V1 ``PPOTrainer._compute_advantage`` reads ``uid``, ``response_mask``, rewards and
log-probs from the TransferQueue, runs the configured estimator and writes ``advantages`` and
``returns`` back. The token ``entropy`` of the old-log-prob pass is already stored in the queue
next to ``old_log_probs``, but no estimator receives it. :class:`AEMAdvantageMixin` lets verl's
own step run unchanged, then fetches ``uid``, ``response_mask``, ``entropy`` and ``advantages``
for the same keys, applies :func:`aem.integrations.verl.apply_aem` (rows tagged
``is_padding`` by verl's batch padding stay out of the group statistics) and writes the
modulated ``advantages`` back. ``returns`` (a critic's targets) are not changed.

Importing this module registers :class:`AEMPPOTrainerSync` in verl's trainer registry, so
``trainer.v1.trainer_mode=aem_sync`` selects it. verl 0.9.1 also reads the mode *name* inside
``PPOTrainer`` (``trainer_mode == "sync"`` picks the synchronous replay buffer, refill and
checkpoint logic), so the trainer hands its base class a copy of the config whose
``trainer.v1.trainer_mode`` is the base mode (``sync``): apart from the advantage step, an
``aem_sync`` run is a ``sync`` run.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import DictConfig, open_dict
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.protocol import DataProto
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.utils.padding import response_to_nested

from aem.integrations.verl import verl_patches
from aem.integrations.verl.core import AEMConfig, apply_aem, trainer_aem_config

verl_patches.apply_trl_value_head_check()

__all__ = [
    "AEM_SYNC_MODE",
    "AEMAdvantageMixin",
    "AEMPPOTrainerSync",
    "modulate_stored_advantages",
    "with_trainer_mode",
]

logger = logging.getLogger(__name__)

AEM_SYNC_MODE = "aem_sync"

_FIELDS = ["uid", "response_mask", "entropy", "advantages"]


def modulate_stored_advantages(
    batch: KVBatchMeta, config: AEMConfig, metrics: dict[str, Any]
) -> KVBatchMeta:
    """Apply AEM to the ``advantages`` stored in the TransferQueue for ``batch``'s keys.

    Reads ``uid``, ``response_mask``, ``entropy`` and ``advantages`` (nested, one row per key),
    modulates on the padded tensors, writes ``advantages`` back in the same nested layout and
    adds the ``aem/*`` metrics to ``metrics``. Returns the meta of the write, like verl's own
    ``_compute_advantage``.
    """
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=_FIELDS)
    nested_mask = data["response_mask"]
    proto = DataProto(batch=data.to_padded_tensor())
    proto.non_tensor_batch["uid"] = np.array(proto.batch.pop("uid").tolist(), dtype=object)
    not_padding = torch.tensor([not tag.get("is_padding", False) for tag in batch.tags])
    metrics.update(apply_aem(proto, config, stat_mask=not_padding))
    advantages = response_to_nested(proto.batch["advantages"], nested_mask)
    output = TensorDict({"advantages": advantages}, batch_size=len(batch))
    return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=output)


def with_trainer_mode(config: DictConfig, mode: str) -> DictConfig:
    """``config`` itself if ``trainer.v1.trainer_mode == mode``, else a copy with that mode."""
    if config.trainer.v1.trainer_mode == mode:
        return config
    config = copy.deepcopy(config)
    with open_dict(config):
        config.trainer.v1.trainer_mode = mode
    return config


class AEMAdvantageMixin:
    """Adds AEM to any V1 ``PPOTrainer`` subclass: list it before the trainer in the bases and
    set ``base_trainer_mode`` to the mode name verl registered that trainer under.

    Reads ``algorithm.aem.{enable, temperature, eps, span}`` at construction (bad values raise
    ``ValueError`` before any worker starts). With ``enable=False`` the trainer is exactly its
    base class.
    """

    base_trainer_mode: str
    config: Any

    def __init__(self, config: DictConfig) -> None:
        self.aem_config = trainer_aem_config(config)
        if not self.aem_config.enable:
            logger.warning(
                "%s selected but algorithm.aem.enable is False: advantages are not modulated",
                type(self).__name__,
            )
        super().__init__(with_trainer_mode(config, self.base_trainer_mode))

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict[str, Any]) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)  # type: ignore[misc]
        if not self.aem_config.enable:
            return batch
        return modulate_stored_advantages(batch, self.aem_config, metrics)


@register_trainer(AEM_SYNC_MODE)
class AEMPPOTrainerSync(AEMAdvantageMixin, PPOTrainerSync):
    """verl's synchronous V1 trainer (``sync``) with AEM after the advantage estimator."""

    base_trainer_mode = "sync"
