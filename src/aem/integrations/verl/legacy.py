"""AEM in verl's legacy ``RayPPOTrainer`` (``trainer.use_v1=False``; deprecated by verl).

The legacy ``fit`` computes the token entropies (``entropys``) in ``_compute_old_log_prob``, logs
their mean, then pops them before ``batch.union(old_log_prob)``, so they never reach
``compute_advantage``. :class:`AEMRayPPOTrainer` overrides two methods and nothing else:

- ``_compute_old_log_prob`` keeps a reference to the entropies (and to the ``old_log_probs`` of
  the same pass, used to check row alignment later) before ``fit`` pops them;
- ``_update_actor`` (the first method ``fit`` calls with the advantages, after
  ``compute_advantage`` and the critic update) applies
  :func:`aem.integrations.verl.apply_aem` to ``batch.batch["advantages"]`` in place, then
  updates the actor and adds the ``aem/*`` metrics to the actor metrics that ``fit`` logs.

Import it only for the legacy path (it imports verl's ``ray_trainer``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from verl.protocol import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from aem.integrations.verl import verl_patches
from aem.integrations.verl.core import apply_aem, trainer_aem_config

verl_patches.apply_trl_value_head_check()

__all__ = ["AEMRayPPOTrainer"]


class AEMRayPPOTrainer(RayPPOTrainer):
    """verl's legacy ``RayPPOTrainer`` with AEM applied after ``compute_advantage``.

    Same constructor as ``RayPPOTrainer``; reads ``algorithm.aem.{enable, temperature, eps, span}``
    (``ValueError`` on bad values). Use it in place of ``RayPPOTrainer`` in your task runner.
    """

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        self.aem_config = trainer_aem_config(config)
        # (entropys, old_log_probs) of the latest old-log-prob pass, until the actor uses them.
        self._aem_pass: tuple[Tensor, Tensor] | None = None
        super().__init__(config, *args, **kwargs)

    def _compute_old_log_prob(self, batch: DataProto) -> tuple[DataProto, Any]:
        old_log_prob, mfu = super()._compute_old_log_prob(batch)
        if self.aem_config.enable:
            self._aem_pass = (old_log_prob.batch["entropys"], old_log_prob.batch["old_log_probs"])
        return old_log_prob, mfu

    def _update_actor(self, batch: DataProto) -> DataProto:
        aem_metrics = self._aem_modulate(batch) if self.aem_config.enable else {}
        output = super()._update_actor(batch)
        output.meta_info["metrics"].update(aem_metrics)
        return output

    def _aem_modulate(self, batch: DataProto) -> dict[str, float]:
        """AEM on ``batch``'s advantages with the entropies kept from its old-log-prob pass."""
        if self._aem_pass is None:
            raise RuntimeError(
                "AEM found no token entropies for this batch: _compute_old_log_prob did not run "
                "since the last actor update"
            )
        entropy, old_log_probs = self._aem_pass
        self._aem_pass = None
        current = batch.batch["old_log_probs"]
        if current.shape != old_log_probs.shape or not torch.equal(current, old_log_probs):
            raise RuntimeError(
                "the batch reaching the actor update is not the one whose entropies AEM kept "
                "(rows were reordered or changed after _compute_old_log_prob)"
            )
        return apply_aem(batch, self.aem_config, token_entropy=entropy)
