"""The runtime patches of verl 0.9.1 functions that the CPU run needs, all in this module.

Nothing on disk is changed: each patch rebinds one verl name in the importing process, only where
verl itself cannot be configured or extended to the same effect. Patches 1 and 2 are applied by
:mod:`aem.integrations.verl.cpu`, patch 2 also by :mod:`aem.integrations.verl.v1` and
:mod:`aem.integrations.verl.legacy` (idempotently); patch 3 only inside the legacy runner.

1. :func:`apply_gloo_backend` - ``verl.utils.distributed.initialize_global_process_group_ray``
   (verl 0.9.1, ``verl/utils/distributed.py``, lines 83-99), called with no backend by every
   training worker (``verl/workers/engine_workers.py``, ``TrainingWorker.__init__``, line 89),
   builds the process-group backend ``f"cpu:gloo,{device}:{backend}"``. On the ``cpu`` platform
   that names the cpu device twice and torch refuses it ("Duplicate device type cpu in backend
   string"); no platform answer avoids it, because the device name itself is ``cpu``. The
   wrapper passes plain ``gloo`` when verl would build that string on the cpu platform and
   changes nothing else (an explicit backend, such as the ``cpu:gloo`` of verl's
   checkpoint-engine workers, is kept).
2. :func:`apply_trl_value_head_check` - ``verl.models.transformers.monkey_patch.apply_monkey_patch``
   (verl 0.9.1, ``verl/models/transformers/monkey_patch.py``, lines 352-361) runs for every FSDP
   model and, whenever ``trl`` is importable (``verl.utils.import_utils.is_trl_available``),
   imports ``AutoModelForCausalLMWithValueHead`` from ``trl.experimental.ppo`` or ``trl``. TRL
   1.16 (``aem[trl]``) has neither, so with both extras installed every verl actor fails to
   build. The patch makes that module's ``is_trl_available`` true only when the value-head class
   can be imported, which is what the guarded code needs.
3. :func:`legacy_trainer_class` - ``verl.trainer.main_ppo_v0.TaskRunner.run`` (verl 0.9.1,
   ``verl/trainer/main_ppo_v0.py``, line 218) hard-codes ``RayPPOTrainer``; the runner
   :mod:`aem.integrations.verl.main_ppo` has that ``run`` build ``AEMRayPPOTrainer`` instead,
   in its task runner's process, while it runs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Iterator
from typing import Any

__all__ = [
    "apply_gloo_backend",
    "apply_trl_value_head_check",
    "legacy_trainer_class",
    "trl_value_head_available",
]

_PATCHED = "_aem_patched"


def _mark(function: Any) -> Any:
    setattr(function, _PATCHED, True)
    return function


def apply_gloo_backend() -> None:
    """Patch 1: a plain ``gloo`` process group on the cpu platform (where verl defines the
    function and where the training worker imported it)."""
    from verl.utils import distributed
    from verl.utils.device import get_device_name
    from verl.workers import engine_workers

    for module in (distributed, engine_workers):
        initialize = module.initialize_global_process_group_ray
        if getattr(initialize, _PATCHED, False):
            continue

        @functools.wraps(initialize)
        def initialize_on_cpu(
            timeout_second: Any = None, backend: str | None = None, _initialize: Any = initialize
        ) -> None:
            if backend is None and get_device_name() == "cpu":
                backend = "gloo"
            return _initialize(timeout_second=timeout_second, backend=backend)

        module.initialize_global_process_group_ray = _mark(initialize_on_cpu)


def trl_value_head_available() -> bool:
    """True when TRL's ``AutoModelForCausalLMWithValueHead`` can be imported from where verl
    0.9.1 looks for it."""
    for module in ("trl.experimental.ppo", "trl"):
        try:
            if hasattr(importlib.import_module(module), "AutoModelForCausalLMWithValueHead"):
                return True
        except ImportError:
            continue
    return False


def apply_trl_value_head_check() -> None:
    """Patch 2: verl's model patching imports TRL's value head only when it exists."""
    from verl.models.transformers import monkey_patch

    if not getattr(monkey_patch.is_trl_available, _PATCHED, False):
        monkey_patch.is_trl_available = _mark(functools.cache(trl_value_head_available))


@contextlib.contextmanager
def legacy_trainer_class(run: Any, trainer_class: type) -> Iterator[None]:
    """Patch 3, scoped: while the block runs, the name ``RayPPOTrainer`` that verl's legacy
    ``TaskRunner.run`` (the function ``run``) looks up is ``trainer_class``.

    verl 0.9.1's legacy task runner (``verl/trainer/main_ppo_v0.py``, ``TaskRunner.run``, line
    218) builds ``RayPPOTrainer(...)`` by its module-level name, with no option to choose the
    class. The name is swapped in the globals of ``run`` itself: in a Ray actor that function is
    usually a by-value copy (Ray pickles actor classes with cloudpickle) whose globals are not
    the module's, so swapping the module attribute would not reach it.
    """
    namespace = run.__globals__
    original = namespace["RayPPOTrainer"]
    namespace["RayPPOTrainer"] = trainer_class
    try:
        yield
    finally:
        namespace["RayPPOTrainer"] = original
