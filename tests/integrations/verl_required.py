"""Import first in a verl test module: skips the module, with the reason, when verl or its
``verl-core`` extra is not installed (CI installs them and fails on any skip)."""

import pytest

pytest.importorskip(
    "verl",
    reason="verl is an optional extra of aem: pip install 'verl[verl-core]==0.9.1' to run these",
)
pytest.importorskip(
    "transfer_queue",
    reason="verl's trainers need its verl-core extra: pip install 'verl[verl-core]==0.9.1'",
)
