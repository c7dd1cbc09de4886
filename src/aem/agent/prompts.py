"""Per-turn prompts in verl-agent's shape: task, a window of recent turns, the current observation,
the admissible actions and the answer format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aem.envs import names, spec
from aem.envs.registry import GENERIC_ROLE

ANSWER_FORMAT = (
    "Think step by step inside <think> </think>, then give exactly one admissible action "
    "inside <action> </action>."
)


@dataclass(frozen=True)
class PromptConfig:
    """``style``: ``"full"`` (verl-agent's wording, for instruct models) or ``"compact"`` (short
    labelled lines, for the tiny from-scratch model whose context is expensive);
    ``history_length``: how many past (observation, action) pairs to show."""

    style: str = "full"
    history_length: int = 2
    show_admissible: bool = True

    def __post_init__(self) -> None:
        if self.style not in ("full", "compact"):
            raise ValueError(f"style must be 'full' or 'compact', got {self.style!r}")
        if self.history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {self.history_length!r}")


def build_prompt(
    env_name: str,
    task: str,
    observation: str,
    history: Sequence[tuple[str, str]],
    admissible: Sequence[str],
    config: PromptConfig | None = None,
) -> str:
    """The prompt for the next turn.

    ``history`` holds the earlier turns as ``(observation the agent saw, action it took)``, oldest
    first; the last ``config.history_length`` are shown. The step count is ``len(history)``.
    """
    config = config or PromptConfig()
    step = len(history)
    shown = history[max(0, step - config.history_length) :] if config.history_length else []
    first = step - len(shown) + 1
    if config.style == "compact":
        lines = [f"Task: {task}"]
        lines += [
            f"Obs {first + k}: {obs}\nAct {first + k}: {act}" for k, (obs, act) in enumerate(shown)
        ]
        lines.append(f"Obs {step + 1}: {observation}")
        if config.show_admissible:
            lines.append("Actions: " + " | ".join(admissible))
        return "\n".join(lines) + "\n"
    role = spec(env_name).role if env_name in names() else GENERIC_ROLE
    parts = [f"{role} Your task is to: {task}"]
    if shown:
        turns = " ".join(
            f"[Observation {first + k}: '{obs}', Action {first + k}: '{act}']"
            for k, (obs, act) in enumerate(shown)
        )
        parts.append(
            f"You have taken {step} step(s) so far. The last {len(shown)} observation(s) and the "
            f"action(s) you took: {turns}"
        )
    parts.append(f"You are at step {step + 1} and your current observation is: {observation}")
    if config.show_admissible:
        parts.append("Your admissible actions now are: [" + ", ".join(admissible) + "].")
    parts.append(ANSWER_FORMAT)
    return "\n".join(parts) + "\n"


def build_followup(
    env_name: str,
    observation: str,
    step: int,
    admissible: Sequence[str],
    config: PromptConfig | None = None,
) -> str:
    """What a trajectory-long sequence gains before the response of turn ``step`` (from 0, at
    least 1): the new observation, the admissible actions and (``full`` style) the answer
    format. The task and the earlier turns are already in the sequence, so they are not
    repeated; ``config.history_length`` does not apply.
    """
    config = config or PromptConfig()
    if step < 1:
        raise ValueError(f"step must be >= 1 (turn 0 gets build_prompt), got {step!r}")
    if config.style == "compact":
        lines = [f"Obs {step + 1}: {observation}"]
        if config.show_admissible:
            lines.append("Actions: " + " | ".join(admissible))
        return "\n".join(lines) + "\n"
    parts = [f"You are at step {step + 1} and your current observation is: {observation}"]
    if config.show_admissible:
        parts.append("Your admissible actions now are: [" + ", ".join(admissible) + "].")
    parts.append(ANSWER_FORMAT)
    return "\n".join(parts) + "\n"
