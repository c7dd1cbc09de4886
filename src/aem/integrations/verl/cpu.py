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
process group; TRL 1.16 next to verl). :data:`CPU_OVERRIDES` (the Hydra overrides of a
CPU run) and :data:`CPU_ENVIRONMENT` (its environment) are in
:mod:`aem.integrations.verl.cpu_settings`. Nothing here changes a GPU run unless
``VERL_PLATFORM=cpu`` is set.
"""

from __future__ import annotations

# cpu_platform first (imports run in this order): importing verl's engines resolves the platform
from aem.integrations.verl import cpu_platform, hf_rollout, v1, verl_patches
from aem.integrations.verl.cpu_settings import CPU_ENVIRONMENT, CPU_OVERRIDES

__all__ = ["CPU_ENVIRONMENT", "CPU_OVERRIDES"]

cpu_platform.register_cpu_engines()
verl_patches.apply_gloo_backend()
verl_patches.apply_trl_value_head_check()

# Referenced so that the registrations they make on import are visibly intended.
_REGISTERED = (cpu_platform.PlatformCPU, hf_rollout.HFReplica, v1.AEMPPOTrainerSync)
