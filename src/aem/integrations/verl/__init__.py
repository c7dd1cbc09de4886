"""AEM inside verl (paper Sec. 4), without forking verl.

verl's advantage estimators (``register_adv_est``) receive rewards, ``response_mask``, the ``uid``
index and the config, never the token entropy, so AEM runs as a step after the estimator:

- this package: :func:`apply_aem` modulates ``data.batch["advantages"]`` of a ``DataProto`` in
  place (group = ``uid``; one span per assistant turn, i.e. per run of a row's
  ``response_mask``; ``stat_mask`` for padding / duplicated rows, see
  :func:`first_occurrence_mask`) and returns ``aem/*`` metrics; :class:`AEMConfig` reads
  ``algorithm.aem.{enable, temperature, eps, span}``. Needs only ``verl.protocol``, so it also
  works inside verl-agent's fork of verl.
- :mod:`aem.integrations.verl.v1`: the V1 trainer (verl 0.9) registered as
  ``trainer.v1.trainer_mode=aem_sync``; set ``VERL_USE_EXTERNAL_MODULES=aem.integrations.verl.v1``
  so that verl's Ray processes import (and so register) it on ``import verl``.
- :mod:`aem.integrations.verl.legacy`: ``AEMRayPPOTrainer`` for verl 0.9's legacy trainer.

Hydra overrides: ``+algorithm.aem.enable=True +algorithm.aem.temperature=1.0`` (and optionally
``+algorithm.aem.eps=1e-6``, ``+algorithm.aem.span=turn|row``). Tested with verl 0.9.1
(``verl[verl-core]``).
"""

from __future__ import annotations

# verl first: ``import verl`` imports the modules of VERL_USE_EXTERNAL_MODULES, which may be this
# package's own (aem.integrations.verl.cpu / .v1, importing .core); importing verl before .core
# lets them load completely instead of meeting a half-imported .core.
import verl  # noqa: F401  isort: skip

from aem.integrations.verl.core import (
    AEMConfig,
    apply_aem,
    dense_group_ids,
    first_occurrence_mask,
    trainer_aem_config,
)

__all__ = [
    "AEMConfig",
    "apply_aem",
    "dense_group_ids",
    "first_occurrence_mask",
    "trainer_aem_config",
]
