"""verl's ``main_ppo`` with ``AEMRayPPOTrainer`` for the legacy trainer::

    python -m aem.integrations.verl.main_ppo <verl's overrides> trainer.use_v1=False \
        +algorithm.aem.enable=True +algorithm.aem.temperature=1.0

The same Hydra config (verl's ``ppo_trainer``), checks and Ray start as
``python -m verl.trainer.main_ppo``. With ``trainer.use_v1=True`` (verl's default) it runs verl's
V1 task runner unchanged (use ``trainer.v1.trainer_mode=aem_sync`` there); with
``trainer.use_v1=False`` it runs verl's legacy task runner, whose trainer is
:class:`aem.integrations.verl.legacy.AEMRayPPOTrainer` instead of the ``RayPPOTrainer`` verl
0.9.1 hard-codes (see :func:`aem.integrations.verl.verl_patches.legacy_trainer_class`).
"""

from __future__ import annotations

from typing import Any

import hydra
import ray
from verl.trainer import main_ppo as verl_main_ppo
from verl.trainer.main_ppo_v0 import TaskRunner
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device

from aem.integrations.verl.verl_patches import legacy_trainer_class

__all__ = ["AEMTaskRunner", "main"]


@ray.remote
class AEMTaskRunner(TaskRunner.__ray_actor_class__):  # verl's legacy runner class itself
    """verl's legacy ``TaskRunner`` whose ``run`` builds ``AEMRayPPOTrainer``."""

    def run(self, config: Any) -> None:
        from aem.integrations.verl.legacy import AEMRayPPOTrainer

        verl_run = super().run
        with legacy_trainer_class(verl_run.__func__, AEMRayPPOTrainer):
            verl_run(config)


@hydra.main(config_path="pkg://verl.trainer.config", config_name="ppo_trainer", version_base=None)
def main(config: Any) -> None:
    """verl's ``main`` (same checks), with :class:`AEMTaskRunner` for the legacy trainer."""
    auto_set_device(config)
    validate_config(
        config=config,
        use_reference_policy=need_reference_policy(config),
        use_critic=need_critic(config),
    )
    if config.trainer.use_v1:
        verl_main_ppo.run_ppo(config, task_runner_class=verl_main_ppo.TaskRunnerV1)
    else:
        verl_main_ppo.run_ppo(config, task_runner_class=AEMTaskRunner)


if __name__ == "__main__":
    main()
