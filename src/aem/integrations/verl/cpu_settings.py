"""The settings of a verl 0.9.1 run on a CPU with :mod:`aem.integrations.verl.cpu` (no verl
import here). Print the Hydra overrides, one per line, for a shell command line::

    export VERL_USE_EXTERNAL_MODULES=aem.integrations.verl.cpu VERL_PLATFORM=cpu
    python3 -m verl.trainer.main_ppo $(python3 -m aem.integrations.verl.cpu_settings) ...
"""

from __future__ import annotations

__all__ = ["CPU_ENVIRONMENT", "CPU_OVERRIDES", "CPU_PLATFORM", "ROLLOUT_NAME"]

CPU_PLATFORM = "cpu"
ROLLOUT_NAME = "hf"

#: Environment of a CPU run (Ray's workers inherit it from the driver).
CPU_ENVIRONMENT: dict[str, str] = {
    "VERL_USE_EXTERNAL_MODULES": "aem.integrations.verl.cpu",
    "VERL_PLATFORM": CPU_PLATFORM,
}

#: Hydra overrides of a CPU run, on top of the run's own (model, data, batch sizes, steps).
CPU_OVERRIDES: tuple[str, ...] = (
    "trainer.device=cpu",
    "trainer.n_gpus_per_node=1",
    "trainer.nnodes=1",
    # verl's resource pools always ask Ray for GPUs: declare one logical GPU (Ray only counts
    # it), and enough logical CPUs for verl's actors (TaskRunner, agent-loop and reward
    # workers, the TransferQueue controller and storage unit, the rollout server).
    "+ray_kwargs.ray_init.num_gpus=1",
    "ray_kwargs.ray_init.num_cpus=12",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    f"actor_rollout_ref.rollout.name={ROLLOUT_NAME}",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    # FSDP2 (FSDP1 insists on an accelerator), no torch.compile, no flash attention, fp32
    "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.actor.fsdp_config.strategy=fsdp2",
    "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.actor.fsdp_config.model_dtype=fp32",
    "actor_rollout_ref.actor.fsdp_config.dtype=float32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.reduce_dtype=fp32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.buffer_dtype=fp32",
)


if __name__ == "__main__":
    print("\n".join(CPU_OVERRIDES))
