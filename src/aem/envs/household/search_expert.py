"""An observation-only household expert: it sees what the agent's prompt shows, nothing hidden.

:class:`~aem.envs.household.expert.HouseholdExpert` reads the hidden object locations, so its
choice of where to go looks random to a model that imitates it. :func:`search_action` instead
decides from the task text, the current observation, the admissible commands and a window of
recent ``(observation, action)`` pairs, with a fixed search rule the model can learn:

- where it stands and what it holds are read off the admissible commands (``examine R`` of the
  receptacle it stands at, ``examine O`` of the object in hand);
- to find an object it sweeps, in the sorted order of the ``go to`` commands and starting after
  the receptacle it stands at, the receptacles whose kind can hold that object (never the goal
  receptacle kind, where targets never start); it opens closed ones and takes the target as
  soon as a ``take`` command offers it;
- then it treats the object at the first appliance of the task (``heat`` / ``cool`` /
  ``clean``), and moves it to the first goal receptacle (opening it first); for ``look`` it
  sweeps the lamp-holding receptacles until ``use <lamp>`` is offered;
- a wrong object in hand is put down at the next receptacle that accepts it.

Whether the held object is already treated is taken from the treatment's feedback in the
current observation or the history window, or assumed once the agent stands at a goal
receptacle (the rule only goes there with a treated object).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aem.checks import require_int_at_least
from aem.envs.base import AgentView
from aem.envs.household.catalog import CAN_CONTAIN, LAMP_HOSTS
from aem.envs.household.goals import TEMPLATES, TREATMENT


@dataclass(frozen=True)
class ParsedTask:
    """What a task sentence asks: the task type and the kinds it names."""

    task_type: str
    object_kind: str
    parent_kind: str | None
    toggle_kind: str | None


def _template_pattern(template: str) -> re.Pattern[str]:
    pattern = re.escape(template + ".")
    for field in ("obj", "recep", "toggle"):
        pattern = pattern.replace(re.escape("{" + field + "}"), f"(?P<{field}>[a-z]+)")
    return re.compile(pattern)


_TASK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (task_type, _template_pattern(template))
    for task_type, templates in TEMPLATES.items()
    for template in templates
)


def parse_task(task: str) -> ParsedTask:
    """``"put a hot apple in fridge."`` -> ``ParsedTask("heat", "apple", "fridge", None)``."""
    text = task.strip()
    for task_type, pattern in _TASK_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            fields = match.groupdict()
            return ParsedTask(task_type, fields["obj"], fields.get("recep"), fields.get("toggle"))
    raise ValueError(f"task is not a household task sentence, got {task!r}")


def kind_of(name: str) -> str:
    """``"cabinet 3"`` -> ``"cabinet"``."""
    return name.rsplit(" ", 1)[0]


def _is_receptacle(name: str) -> bool:
    return kind_of(name) in CAN_CONTAIN


def _examined(admissible: Sequence[str]) -> list[str]:
    return [cmd.removeprefix("examine ") for cmd in admissible if cmd.startswith("examine ")]


def current_receptacle(admissible: Sequence[str]) -> str | None:
    """The receptacle the agent stands at (the one it can examine), None in mid-room."""
    return next((name for name in _examined(admissible) if _is_receptacle(name)), None)


def held_object(admissible: Sequence[str]) -> str | None:
    """The object in the agent's hands (the examinable non-receptacle), None if empty-handed."""
    return next((name for name in _examined(admissible) if not _is_receptacle(name)), None)


def receptacles(admissible: Sequence[str]) -> list[str]:
    """Every receptacle of the room, sorted: the ``go to`` targets plus the current one."""
    names = [cmd.removeprefix("go to ") for cmd in admissible if cmd.startswith("go to ")]
    here = current_receptacle(admissible)
    return sorted(names if here is None else [*names, here])


def next_receptacle(
    places: Sequence[str], here: str | None, wanted: Callable[[str], bool]
) -> str | None:
    """The first ``wanted`` receptacle after ``here`` in the sorted ``places``, cyclically
    (from the start when ``here`` is None); ``here`` itself is never chosen."""
    ordered = sorted(places)
    start = 0 if here is None else next((i for i, r in enumerate(ordered) if r > here), 0)
    rotated = ordered[start:] + ordered[:start]
    return next((r for r in rotated if r != here and wanted(r)), None)


def _treated(verb: str, held: str, observation: str, window: Sequence[tuple[str, str]]) -> bool:
    evidence = f"You {verb} the {held} using"
    return evidence in observation or any(evidence in obs for obs, _ in window)


def search_action(
    task: str,
    observation: str,
    admissible: Sequence[str],
    window: Sequence[tuple[str, str]] = (),
) -> str:
    """The expert's next command from what the agent's prompt shows.

    ``window`` holds the ``(observation, action)`` pairs the prompt shows, oldest first.
    """
    if not admissible:
        raise ValueError("admissible must list the commands possible now, got an empty list")
    goal = parse_task(task)
    allowed = set(admissible)
    places = receptacles(admissible)
    here = current_receptacle(admissible)
    held = held_object(admissible)

    def go(wanted: Callable[[str], bool]) -> str:
        target = next_receptacle(places, here, wanted) or next_receptacle(
            places, here, lambda r: True
        )
        return f"go to {target}" if target is not None else "look"

    def open_here() -> str | None:
        command = f"open {here}"
        return command if command in allowed else None

    if held is not None and kind_of(held) != goal.object_kind:
        command = f"move {held} to {here}"
        if command in allowed:
            return command
        if here is not None and kind_of(held) in CAN_CONTAIN[kind_of(here)] and open_here():
            return f"open {here}"
        return go(lambda r: kind_of(held) in CAN_CONTAIN[kind_of(r)])

    if held is None:
        searching_here = here is not None and kind_of(here) != goal.parent_kind
        if searching_here:
            takes = sorted(
                cmd
                for cmd in admissible
                if cmd.startswith(f"take {goal.object_kind} ") and cmd.endswith(f" from {here}")
            )
            if takes:
                return takes[0]
            if goal.object_kind in CAN_CONTAIN[kind_of(here)] and open_here():
                return f"open {here}"
        return go(
            lambda r: kind_of(r) != goal.parent_kind and goal.object_kind in CAN_CONTAIN[kind_of(r)]
        )

    if goal.task_type == "look":
        uses = sorted(cmd for cmd in admissible if cmd.startswith(f"use {goal.toggle_kind} "))
        if uses:
            return uses[0]
        return go(lambda r: kind_of(r) in LAMP_HOSTS)

    at_parent = here is not None and kind_of(here) == goal.parent_kind
    treatment = TREATMENT[goal.task_type]
    if treatment is not None and not at_parent:
        verb = goal.task_type
        if not _treated(verb, held, observation, window):
            command = f"{verb} {held} with {here}"
            if command in allowed:
                return command
            return go(lambda r: kind_of(r) == treatment[0])

    first_parent = next_receptacle(places, None, lambda r: kind_of(r) == goal.parent_kind)
    if at_parent and (goal.task_type != "pick2" or here == first_parent):
        return open_here() or f"move {held} to {here}"
    return f"go to {first_parent}"


class SearchExpert:
    """:func:`search_action` with the prompt's history window: ``act(task, observation,
    admissible, history)`` sees only the last ``history_length`` pairs of ``history``."""

    def __init__(self, history_length: int = 2) -> None:
        require_int_at_least("history_length", history_length, 0)
        self.history_length = history_length

    def act(
        self,
        task: str,
        observation: str,
        admissible: Sequence[str],
        history: Sequence[tuple[str, str]] = (),
    ) -> str:
        """The next command; ``history`` holds every earlier ``(observation, action)`` pair."""
        window = tuple(history)[-self.history_length :] if self.history_length else ()
        return search_action(task, observation, admissible, window)


def act_on_view(view: AgentView, history_length: int) -> str:
    """:class:`SearchExpert`'s action for a turn, from what the agent's prompt shows (the
    household's warm-start expert)."""
    commands = view.info["admissible_commands"]
    return SearchExpert(history_length).act(view.task, view.observation, commands, view.history)
