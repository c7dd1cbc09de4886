"""The agent side of a text environment: prompts with a history window and action parsing."""

from aem.agent.parsing import INVALID_ACTION_PENALTY, ParsedAction, parse_response, turn_reward
from aem.agent.prompts import PromptConfig, build_followup, build_prompt

__all__ = [
    "INVALID_ACTION_PENALTY",
    "ParsedAction",
    "PromptConfig",
    "build_followup",
    "build_prompt",
    "parse_response",
    "turn_reward",
]
