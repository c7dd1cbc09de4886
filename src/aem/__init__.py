"""aem: Adaptive Entropy Modulation for multi-turn agentic RL of LLM agents.

The three calls a trainer needs (paper Eq. 13-15)::

    import aem
    h = aem.response_entropy(token_entropy, response_mask)          # [S]
    w = aem.aem_coefficients(h, group_index, temperature=1.0)        # [S]
    advantages, stats = aem.modulate_advantages(
        advantages, token_entropy, response_mask, group_index)       # [B, T]

EMPG (Wang et al. 2025), the nearest published peer, has the same call shape::

    advantages, stats = aem.empg_modulate_advantages(
        advantages, token_entropy, response_mask, group_index,
        trajectory_index=traj, turn_index=turn)                          # [B, T]
"""

from aem.algorithms.empg import empg_modulate_advantages
from aem.algorithms.modulation import aem_coefficients, modulate_advantages, response_entropy

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "aem_coefficients",
    "empg_modulate_advantages",
    "modulate_advantages",
    "response_entropy",
]
