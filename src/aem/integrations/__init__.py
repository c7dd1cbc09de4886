"""Adapters that run AEM inside other RL frameworks without forking them.

Each adapter lives in its own submodule and imports its framework only when imported itself, so
``import aem`` never needs them:

- :mod:`aem.integrations.trl`: ``AEMGRPOTrainer``, a drop-in subclass of TRL's ``GRPOTrainer``
  (needs ``pip install 'trl>=1.16,<1.17'``).
- :mod:`aem.integrations.verl`: ``apply_aem``, the ``aem_sync`` trainer, ``AEMRayPPOTrainer`` and
  its runner, and a plugin that runs verl's own trainer on a CPU (needs
  ``pip install 'verl[verl-core]==0.9.1'``).

Both weigh every assistant turn of a row on its own: :mod:`aem.integrations.spans` (torch only)
splits rows into responses and holds the one call to the modulation they share.
"""
