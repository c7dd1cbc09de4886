"""Run verl 0.9.1's own trainer on a CPU: ``VERL_USE_EXTERNAL_MODULES=aem.integrations.verl.cpu``.

verl needs an accelerator, an inference server (vLLM, SGLang or TensorRT-LLM) and flash
attention. Importing this module (verl's ``import verl`` does it in every verl process, Ray
workers included, when the module is listed in ``VERL_USE_EXTERNAL_MODULES``) registers, through
verl's own extension points:

- the ``cpu`` platform (:mod:`aem.integrations.verl.cpu_platform`; selected by
  ``VERL_PLATFORM=cpu``) and verl's FSDP engines for the ``cpu`` device;
- the ``hf`` rollout backend (:mod:`aem.integrations.verl.hf_rollout`), a Hugging Face sampler
  that stands in for vLLM (``actor_rollout_ref.rollout.name=hf``);
- the ``aem_sync`` trainer (:mod:`aem.integrations.verl.v1`);

and applies the runtime patches of :mod:`aem.integrations.verl.verl_patches` (a plain ``gloo``
process group; TRL 1.16 next to verl). :data:`CPU_OVERRIDES` are the Hydra overrides of a CPU
run and :data:`CPU_ENVIRONMENT` its environment. Nothing here changes a GPU run unless
``VERL_PLATFORM=cpu`` is set.
"""

from __future__ import annotations

# cpu_platform first (imports run in this order): importing verl's engines resolves the platform
from aem.integrations.verl import cpu_platform, hf_rollout, v1, verl_patches

__all__ = ["CPU_ENVIRONMENT", "CPU_OVERRIDES"]

#: Environment of a CPU run (the Ray workers inherit it from the driver).
CPU_ENVIRONMENT: dict[str, str] = {
    "VERL_USE_EXTERNAL_MODULES": __name__,
    "VERL_PLATFORM": cpu_platform.CPU_PLATFORM,
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
    f"actor_rollout_ref.rollout.name={hf_rollout.ROLLOUT_NAME}",
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

cpu_platform.register_cpu_engines()
verl_patches.apply_gloo_backend()
verl_patches.apply_trl_value_head_check()

# Referenced so that the registrations they make on import are visibly intended.
_REGISTERED = (cpu_platform.PlatformCPU, hf_rollout.HFReplica, v1.AEMPPOTrainerSync)
