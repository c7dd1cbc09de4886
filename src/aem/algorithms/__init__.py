"""Pure tensor math of AEM (torch only): entropy, modulation, estimators, losses, theory."""

from aem.algorithms.advantages import (
    AdvantageConfig,
    AdvantageInputs,
    advantage_estimators,
    compute_advantages,
    get_advantage_estimator,
    register_advantage_estimator,
)
from aem.algorithms.empg import EMPGModulation, empg_modulate, empg_modulate_advantages
from aem.algorithms.entropy import (
    chunked_logprobs_and_entropy,
    logprobs_and_entropy,
    logprobs_from_logits,
)
from aem.algorithms.kl import kl_penalty
from aem.algorithms.losses import (
    PolicyLossConfig,
    aggregate_loss,
    entropy_bonus,
    get_policy_loss,
    policy_losses,
    register_policy_loss,
)
from aem.algorithms.modulation import (
    ModulationConfig,
    aem_coefficients,
    get_modulation,
    modulate_advantages,
    modulations,
    register_modulation,
    response_entropy,
    spans_from_mask,
)
from aem.algorithms.shaping import overlong_penalty

__all__ = [
    "AdvantageConfig",
    "AdvantageInputs",
    "EMPGModulation",
    "ModulationConfig",
    "PolicyLossConfig",
    "advantage_estimators",
    "aem_coefficients",
    "aggregate_loss",
    "chunked_logprobs_and_entropy",
    "compute_advantages",
    "empg_modulate",
    "empg_modulate_advantages",
    "entropy_bonus",
    "get_advantage_estimator",
    "get_modulation",
    "get_policy_loss",
    "kl_penalty",
    "logprobs_and_entropy",
    "logprobs_from_logits",
    "modulate_advantages",
    "modulations",
    "overlong_penalty",
    "policy_losses",
    "register_advantage_estimator",
    "register_modulation",
    "register_policy_loss",
    "response_entropy",
    "spans_from_mask",
]
