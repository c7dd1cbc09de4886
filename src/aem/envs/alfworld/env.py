"""``AlfWorldEnv``: ALFWorld's real TextWorld engine behind the :class:`~aem.envs.base.TextEnv`
protocol, playing either the user's ALFWorld data or games exported from household tasks."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

from aem.checks import require_int_at_least
from aem.envs.alfworld.backend import alfworld_modules, logic_texts, start_game
from aem.envs.alfworld.export import DATA_FOLDER, PAPER_TASK_TYPES, export_task, task_folder
from aem.envs.base import (
    StepResult,
    TextEnv,
    check_episode_limits,
    check_task_index,
    choose_task_index,
)
from aem.envs.household.engine import Engine
from aem.envs.household.expert import expert_plan
from aem.envs.household.goals import TASK_TYPES
from aem.envs.household.scene import SceneConfig
from aem.envs.household.tasks import SPLIT_SIZES, SPLITS, Task, build_task, task_type_of

SOURCES: tuple[str, ...] = ("household", "data")
NOTHING_HAPPENS = "Nothing happens."
"""ALFWorld's reply to a command that is not admissible."""
TASK_PREFIX = "Your task is to: "
_SKIPPED_FOLDERS = ("movable", "Sliced")
"""ALFWorld's text games leave out these ALFRED trials (``AlfredTWEnv.collect_game_files``)."""


def default_games_dir() -> Path:
    """Cache of exported household games: ``$XDG_CACHE_HOME/aem/alfworld`` (``~/.cache/...``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "aem" / "alfworld"


def default_data_dir() -> Path:
    """ALFWorld's data root: ``$ALFWORLD_DATA``, else ``~/.cache/alfworld`` (ALFWorld's default)."""
    data = os.environ.get("ALFWORLD_DATA") or os.path.join(
        os.path.expanduser("~"), ".cache", "alfworld"
    )
    return Path(data)


def collect_games(split_dir: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """``(game.tw-pddl, paper task type)`` of every playable game under ``split_dir``, sorted.

    Same rules as ALFWorld's ``AlfredTWEnv``: a game needs its ``traj_data.json`` beside it, one
    of the six task types and ``"solvable": true``; ``movable`` and ``Sliced`` trials are skipped.
    """
    games = []
    for game_file in sorted(Path(split_dir).rglob("game.tw-pddl")):
        if any(part in str(game_file.parent) for part in _SKIPPED_FOLDERS):
            continue
        task_type = _task_type_beside(game_file)
        if task_type is None:
            continue
        with open(game_file) as f:
            if json.load(f).get("solvable"):
                games.append((game_file, task_type))
    return games


def _task_type_beside(game_file: Path) -> str | None:
    """The paper task type in ``traj_data.json`` next to ``game_file`` (None if not one of six)."""
    traj_file = game_file.with_name("traj_data.json")
    if not traj_file.is_file():
        return None
    with open(traj_file) as f:
        return PAPER_TASK_TYPES.get(json.load(f).get("task_type", ""))


class AlfWorldEnv(TextEnv):
    """ALFWorld's text games, played by ALFWorld's own engine (TextWorld ``PddlEnv``).

    Args:
        split: ``"train"``, ``"valid_seen"`` or ``"valid_unseen"``.
        source: ``"household"`` plays household task ``k`` of ``split`` (the twin's task list,
            exported on first use by :func:`~aem.envs.alfworld.export.export_task` into
            ``games_dir``); ``"data"`` plays ALFWorld's own games, ``game_files`` or those found
            under ``data_dir/json_2.1.1/<split>`` (:func:`collect_games`).
        game_files: ``game.tw-pddl`` files (each with its ``traj_data.json``); ``source="data"``.
        data_dir: ALFWorld's data root (default :func:`default_data_dir`, i.e. ``$ALFWORLD_DATA``).
        games_dir: cache of exported household games (default :func:`default_games_dir`).
        num_tasks: household tasks in the split (default the twin's ``SPLIT_SIZES``); for data
            it keeps the first ``num_tasks`` games (default all).
        scene_config: the household generator's :class:`SceneConfig` (or a dict of its fields).
        max_steps: episode length limit; ``truncated`` is True on that step unless it was won.
        success_reward: reward on the step the goal is reached (else 0).
        seed: seeds the env's own generator, used by ``reset(seed=None)``.

    ``reset(seed)`` plays game ``random.Random(seed).randrange(num_tasks)``;
    ``options={"task_index": k}`` plays game ``k`` and ``options={"task_type": "heat"}`` draws
    among games of one type. ``step`` lowercases the command and collapses its whitespace;
    ``info["valid"]`` is False when it was not admissible (ALFWorld then answers
    ``"Nothing happens."``). ``info`` holds ``admissible_commands`` (ALFWorld's sorted list,
    ``help`` included), ``won``, ``task_type`` (the paper's name), ``task`` (the goal sentence),
    ``valid``, ``task_index``, ``split``, ``source`` and ``game_file``.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        source: str = "household",
        game_files: list[str | os.PathLike[str]] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        games_dir: str | os.PathLike[str] | None = None,
        num_tasks: int | None = None,
        scene_config: SceneConfig | dict | None = None,
        max_steps: int = 50,
        success_reward: float = 10.0,
        seed: int | None = None,
    ) -> None:
        modules = alfworld_modules()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        check_episode_limits(max_steps, success_reward)
        if num_tasks is not None:
            require_int_at_least("num_tasks", num_tasks, 1)
        self.split = split
        self.source = source
        self.max_steps = max_steps
        self.success_reward = float(success_reward)
        self.scene_config = _scene_config(scene_config)
        self._games: list[tuple[Path, str]] = []
        if source == "household":
            if game_files is not None or data_dir is not None:
                raise ValueError("game_files and data_dir apply to source='data', not 'household'")
            self.num_tasks = num_tasks if num_tasks is not None else SPLIT_SIZES[split]
            root = Path(games_dir) if games_dir is not None else default_games_dir()
            key = hashlib.sha1(repr(self.scene_config).encode()).hexdigest()[:10]
            self.games_dir = root / f"alfworld-{modules.version}" / f"household-{key}"
        else:
            if scene_config is not None or games_dir is not None:
                raise ValueError("scene_config and games_dir apply to source='household'")
            self._games = self._data_games(game_files, data_dir)
            if num_tasks is not None:
                self._games = self._games[:num_tasks]
            self.num_tasks = len(self._games)
            self.games_dir = None
        self._rng = random.Random(seed)
        self._game: Any = None
        self._game_file: Path | None = None
        self._state: Any = None
        self._task_index = -1
        self._task_type = ""
        self._task_text = ""
        self._steps = 0
        self._done = True

    # ------------------------------------------------------------------ games

    def _data_games(
        self,
        game_files: list[str | os.PathLike[str]] | None,
        data_dir: str | os.PathLike[str] | None,
    ) -> list[tuple[Path, str]]:
        if game_files is not None:
            games = []
            for file in game_files:
                path = Path(file)
                if not path.is_file() or path.suffix != ".tw-pddl":
                    raise ValueError(
                        f"game_files must be existing .tw-pddl files, got {str(path)!r}"
                    )
                task_type = _task_type_beside(path)
                if task_type is None:
                    raise ValueError(
                        f"game_files: {path} needs a traj_data.json beside it naming one of "
                        f"ALFWorld's six task types"
                    )
                games.append((path, task_type))
            if not games:
                raise ValueError("game_files must list at least one game, got an empty list")
            return games
        split_dir = (Path(data_dir) if data_dir is not None else default_data_dir()) / DATA_FOLDER
        split_dir = split_dir / self.split
        if not split_dir.is_dir():
            raise ValueError(
                f"no ALFWorld data at {split_dir}: run `alfworld-download` (it fills "
                "$ALFWORLD_DATA) or pass data_dir=/game_files="
            )
        games = collect_games(split_dir)
        if not games:
            raise ValueError(f"no playable ALFWorld game (solvable game.tw-pddl) under {split_dir}")
        return games

    def household_task(self, index: int) -> Task:
        """Household task ``index`` of the split (``source="household"`` only)."""
        if self.source != "household":
            raise ValueError(
                f"household_task needs source='household', this env has {self.source!r}"
            )
        self._check_index(index)
        return build_task(self.split, index, self.scene_config)

    def task_type_at(self, index: int) -> str:
        """The paper task type of game ``index``."""
        self._check_index(index)
        if self.source == "household":
            return task_type_of(index)
        return self._games[index][1]

    def game_path(self, index: int) -> Path:
        """The ``game.tw-pddl`` of game ``index`` (a household task is exported first if needed)."""
        self._check_index(index)
        if self.source == "data":
            return self._games[index][0]
        task = self.household_task(index)
        assert self.games_dir is not None
        game_file = self.games_dir / task_folder(task) / "game.tw-pddl"
        if game_file.is_file():
            return game_file
        domain, grammar = logic_texts()
        plan = expert_plan(Engine(task))
        return export_task(task, self.games_dir, domain=domain, grammar=grammar, walkthrough=plan)

    def _check_index(self, index: object) -> None:
        check_task_index(index, self.num_tasks)

    # ------------------------------------------------------------------ protocol

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if seed is not None:
            self._rng = random.Random(seed)
        index = self._choose_index(options or {})
        path = self.game_path(index)
        if path != self._game_file:
            self.close()
            self._game = start_game(path)
            self._game_file = path
        state = self._game.reset()
        self._state = state
        self._task_index = index
        self._task_type = self.task_type_at(index)
        self._task_text = state["feedback"].rpartition(TASK_PREFIX)[2].strip()
        self._steps = 0
        self._done = False
        return state["feedback"], self._info(valid=True)

    def step(self, action: str) -> StepResult:
        if not isinstance(action, str):
            raise ValueError(f"action must be a str, got {type(action).__name__}")
        if self._done:
            raise RuntimeError("episode is over (or not started): call reset()")
        command = " ".join(action.lower().split())
        valid = command in self._state["admissible_commands"]
        state, _, _ = self._game.step(command)
        self._state = state
        self._steps += 1
        won = bool(state["won"])
        truncated = not won and self._steps >= self.max_steps
        self._done = won or truncated
        reward = self.success_reward if won else 0.0
        return state["feedback"], reward, won, truncated, self._info(valid=valid)

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
        self._game, self._game_file, self._done = None, None, True

    def object_locations(self) -> dict[str, str | None]:
        """Where every object is now in ALFWorld's state: its receptacle's name, None if held."""
        if self._state is None:
            raise RuntimeError("call reset() before reading the world state")
        names = {key: info.name.strip() for key, info in self._state["_entity_infos"].items()}
        where: dict[str, str | None] = {}
        for fact in self._state["_facts"]:
            if fact.name == "inreceptacle":
                obj, receptacle = (names[arg.name] for arg in fact.arguments)
                where[obj] = receptacle
            elif fact.name == "holds":
                where[names[fact.arguments[1].name]] = None
        return where

    def _info(self, *, valid: bool) -> dict[str, Any]:
        return {
            "admissible_commands": list(self._state["admissible_commands"]),
            "won": bool(self._state["won"]),
            "task_type": self._task_type,
            "task": self._task_text,
            "valid": valid,
            "task_index": self._task_index,
            "split": self.split,
            "source": self.source,
            "game_file": str(self._game_file),
        }

    def _choose_index(self, options: dict[str, Any]) -> int:
        candidates_of = None
        if self.source != "household":

            def candidates_of(kind: str) -> list[int]:
                return [i for i, (_, k) in enumerate(self._games) if k == kind]

        return choose_task_index(
            options, self.num_tasks, TASK_TYPES, self.task_type_at, self._rng, candidates_of
        )


def _scene_config(scene_config: SceneConfig | dict | None) -> SceneConfig:
    """A :class:`SceneConfig` from None, itself, or a dict of its fields (lists become tuples)."""
    if scene_config is None:
        return SceneConfig()
    if isinstance(scene_config, dict):
        return SceneConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in scene_config.items()}
        )
    if not isinstance(scene_config, SceneConfig):
        raise ValueError(
            f"scene_config must be a SceneConfig or a dict of its fields, "
            f"got {type(scene_config).__name__}"
        )
    return scene_config
