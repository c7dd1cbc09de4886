"""A ``cpu`` platform for verl 0.9.1, registered in verl's ``PlatformRegistry``.

verl resolves its device through ``verl.plugin.platform.get_platform()``: built in are
``nvidia``, ``npu`` and ``rocm``, and without an accelerator detection falls back to ``nvidia``
(``plugin/platform/platform_manager.py``). Importing this module registers :class:`PlatformCPU`
under the name ``cpu``; ``VERL_PLATFORM=cpu`` selects it in every verl process.
:func:`register_cpu_engines` registers verl's own FSDP engines (``FSDPEngineWithLMHead``,
``FSDPEngineWithValueHead``, registered by verl for ``cuda`` and ``npu`` only) for the ``cpu``
device in verl's ``EngineRegistry``.

What the platform answers, and why:

- device ``cpu``, process-group backend ``gloo``: verl builds ``cpu:gloo,<device>:<backend>``
  (``utils/distributed.py``), which for the cpu device would name ``cpu`` twice, so the backend
  string is plain ``gloo`` (see :func:`communication_backend_name`);
- ``current_device()`` returns the device ``"cpu"``, not an index: verl moves tensors and
  modules to ``get_device_id()`` (``utils/fsdp_utils.py``, the FSDP engine), and an integer there
  means an accelerator;
- Ray resource ``GPU``: verl's resource pools always ask Ray for GPUs
  (``single_controller/ray/base.py``), so a CPU run declares logical ones
  (``+ray_kwargs.ray_init.num_gpus=1``); Ray only counts them;
- the device module is :data:`cpu_device`: ``torch.cpu`` plus what verl calls on a device module
  and ``torch.cpu`` lacks (``empty_cache``, memory statistics, RNG state, ``get_device_name``,
  which verl's FLOPs counter reads).
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from aem.integrations.verl.cpu_settings import CPU_PLATFORM

__all__ = ["CPU_PLATFORM", "PlatformCPU", "cpu_device", "register_cpu_engines"]


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _mem_get_info(*args: Any, **kwargs: Any) -> tuple[int, int]:
    """``(free, total)`` bytes of host memory, as ``torch.cuda.mem_get_info`` reports a GPU's."""
    page = os.sysconf("SC_PAGE_SIZE")
    return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def _device_properties(*args: Any, **kwargs: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(total_memory=_mem_get_info()[1], name="CPU")


def _build_device_module() -> types.ModuleType:
    module = types.ModuleType("aem_verl_cpu_device", "torch.cpu plus the calls verl makes")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(module, name, getattr(torch.cpu, name))
    stubs = {
        "empty_cache": _no_op,
        "ipc_collect": _no_op,
        "set_per_process_memory_fraction": _no_op,
        "reset_peak_memory_stats": _no_op,
        "reset_accumulated_memory_stats": _no_op,
        "memory_allocated": _zero,
        "memory_reserved": _zero,
        "max_memory_allocated": _zero,
        "max_memory_reserved": _zero,
        "mem_get_info": _mem_get_info,
        "get_device_properties": _device_properties,
        "get_device_name": lambda *args, **kwargs: "CPU",
        "get_rng_state": lambda *args, **kwargs: torch.get_rng_state(),
        "set_rng_state": lambda state, *args, **kwargs: torch.set_rng_state(state),
        "manual_seed": lambda seed: torch.manual_seed(seed),
        "manual_seed_all": lambda seed: torch.manual_seed(seed),
        "current_device": lambda: CPU_PLATFORM,
        "set_device": _no_op,
    }
    for name, function in stubs.items():
        setattr(module, name, function)
    return module


cpu_device = _build_device_module()


@PlatformRegistry.register(platform=CPU_PLATFORM)
class PlatformCPU(PlatformBase):
    """verl's platform interface on the host CPU (no accelerator, no profiler)."""

    @property
    def device_name(self) -> str:
        return CPU_PLATFORM

    @property
    def vendor_name(self) -> str:
        return CPU_PLATFORM

    @property
    def device_module(self) -> types.ModuleType:
        return cpu_device

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return False  # never auto-detected: select it with VERL_PLATFORM=cpu

    def current_device(self) -> str:  # type: ignore[override]  # a device, not an index
        return CPU_PLATFORM

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[None, None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for the logical GPUs; nothing reads it here

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> None:
        return None


def register_cpu_engines() -> None:
    """Register verl's FSDP engines for the ``cpu`` device in verl's ``EngineRegistry``
    (idempotent). Call it after this module is imported: importing verl's engines resolves the
    platform, so ``cpu`` must already be registered then."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import (
        FSDPEngineWithLMHead,
        FSDPEngineWithValueHead,
    )

    for engine, model_type in (
        (FSDPEngineWithLMHead, "language_model"),
        (FSDPEngineWithValueHead, "value_model"),
    ):
        for backend in ("fsdp", "fsdp2"):
            registered = EngineRegistry._engines.get(model_type, {}).get(backend, {})
            if registered.get(CPU_PLATFORM) is not engine:
                register = EngineRegistry.register(
                    model_type=model_type, backend=backend, device=CPU_PLATFORM
                )
                register(engine)
