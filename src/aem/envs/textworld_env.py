"""``TextWorldEnv``: Microsoft TextWorld games behind the :class:`~aem.envs.base.TextEnv` protocol.

Games come from ``.z8`` files made by ``tw-make`` (each with its ``.json`` sidecar) or are generated
on first use by TextWorld's own challenge generators (``tw-simple``, ``tw-coin_collector``,
``tw-treasure_hunter``, ``tw-cooking``) into a cache folder, one game per seed, so the same split
and index always give the same game.

TextWorld is an optional dependency (``pip install 'aem[textworld]'``): this module imports it only
when an environment is built. Generating a game runs TextWorld's Inform 7 compiler, which needs an
existing ``$HOME`` and writes documentation into ``$HOME/Inform``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from aem.envs.base import StepResult, TextEnv, check_episode_limits
from aem.envs.registry import register

CHALLENGES: tuple[str, ...] = ("tw-simple", "tw-coin_collector", "tw-treasure_hunter", "tw-cooking")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_SIZES: dict[str, int] = {"train": 100, "valid": 20, "test": 20}
SPLIT_SEED_BASES: dict[str, int] = {"train": 0, "valid": 1_000_000, "test": 2_000_000}
"""Game ``k`` of a split is generated with seed ``SPLIT_SEED_BASES[split] + k``: splits never share
a seed while ``num_games <= 1_000_000``."""

DEFAULT_CHALLENGE_ARGS: dict[str, tuple[str, ...]] = {
    "tw-simple": ("--rewards", "dense", "--goal", "detailed"),
    "tw-coin_collector": ("--level", "5"),
    "tw-treasure_hunter": ("--level", "5"),
    "tw-cooking": ("--recipe", "1", "--take", "1", "--go", "6", "--open"),
}
"""``tw-make`` flags used when ``challenge_args`` is None (``tw-make <challenge> --help``)."""

_OPTION_KEYS = frozenset({"game_index"})
_MAX_SEED_SPAN = 1_000_000
_BANNER_CHARS = frozenset(" _|\\$/<>\n")


def _textworld() -> ModuleType:
    """Import TextWorld (and its challenge registry), or explain which extra installs it."""
    try:
        import textworld
        import textworld.challenges
    except ImportError as exc:
        raise ImportError(
            "the 'textworld' environment needs the TextWorld package: "
            "pip install 'aem[textworld]' (or pip install textworld)"
        ) from exc
    return textworld


def default_games_dir() -> Path:
    """The cache of generated games: ``$XDG_CACHE_HOME/aem/textworld`` (default ``~/.cache``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "aem" / "textworld"


def challenge_settings(
    game_type: str, split: str, challenge_args: Sequence[str] | None = None
) -> dict[str, Any]:
    """The settings dict TextWorld's ``game_type`` generator takes, parsed from ``tw-make`` flags.

    ``challenge_args`` defaults to ``DEFAULT_CHALLENGE_ARGS[game_type]``. The split also picks the
    challenge's own held-out distribution where it has one: ``--test`` for ``tw-simple`` on the
    test split, ``--split <split>`` for ``tw-cooking`` (unless ``challenge_args`` sets it).
    """
    textworld = _textworld()
    if game_type not in CHALLENGES:
        raise ValueError(f"game_type must be one of {CHALLENGES}, got {game_type!r}")
    args = list(DEFAULT_CHALLENGE_ARGS[game_type] if challenge_args is None else challenge_args)
    if game_type == "tw-simple" and split == "test" and "--test" not in args:
        args.append("--test")
    if game_type == "tw-cooking" and "--split" not in args:
        args += ["--split", split]
    _, _, add_arguments = textworld.challenges.CHALLENGES[game_type]
    parser = _SettingsParser(prog=game_type, add_help=False)
    add_arguments(parser)
    try:
        return vars(parser.parse_args(args))
    except ValueError as exc:
        raise ValueError(f"challenge_args {args!r} are not valid for {game_type}: {exc}") from exc


class _SettingsParser(argparse.ArgumentParser):
    """An argument parser that raises ``ValueError`` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def generate_game(game_type: str, settings: dict[str, Any], seed: int, path: Path) -> Path:
    """Generate and compile one ``game_type`` game with ``seed`` into ``path`` (a ``.z8`` file).

    The game is built in a private temporary folder next to ``path`` and moved into place (its
    ``.json`` first, then the ``.z8``), so processes sharing a cache never see a half-written game.
    """
    textworld = _textworld()
    _, make_game, _ = textworld.challenges.CHALLENGES[game_type]
    path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".generating-", dir=path.parent))
    try:
        options = textworld.GameOptions()
        options.seeds = seed
        options.path = str(workdir / path.name)
        options.file_ext = ".z8"
        with _quiet_jericho():  # compiling replays the walkthrough in Jericho
            game = make_game(settings=dict(settings), options=options)
            compiled = Path(textworld.generator.compile_game(game, options))
        os.replace(compiled.with_suffix(".json"), path.with_suffix(".json"))
        os.replace(compiled, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return path


@contextlib.contextmanager
def _quiet_jericho() -> Iterator[None]:
    """Silence Jericho's warning that it cannot track a TextWorld game's score itself (TextWorld
    tracks it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Game .* is not fully supported")
        yield


def strip_banner(text: str) -> str:
    """Drop the ASCII-art "TextWorld" title TextWorld prints before a game's first message."""
    lines = text.split("\n")
    start = 0
    while start < len(lines) and set(lines[start]) <= _BANNER_CHARS:
        start += 1
    return "\n".join(lines[start:])


def normalize_command(action: str) -> str:
    """Lowercase and collapse whitespace, the form TextWorld lists admissible commands in."""
    return " ".join(action.lower().split())


class TextWorldEnv(TextEnv):
    """TextWorld games: given ``.z8`` files, or generated per split from a TextWorld challenge.

    Args:
        game_files: ``.z8`` games made by TextWorld (each needs its ``.json`` sidecar, which holds
            the objective, the walkthrough and what the admissible commands are computed from).
            When given, ``split`` is only a label and nothing is generated.
        split: ``"train"``, ``"valid"`` or ``"test"``; for generated games it picks the seed range
            (``SPLIT_SEED_BASES``) and the challenge's held-out distribution where it has one.
        game_type: the challenge to generate (``CHALLENGES``; default ``"tw-simple"``). With
            ``game_files`` it only overrides ``info["task_type"]``, which is otherwise read from
            the game's ``uuid`` (``"custom"`` if it names no known challenge).
        games_dir: cache of generated games (default :func:`default_games_dir`).
        num_games: games in the split (default ``SPLIT_SIZES[split]``; ``len(game_files)``).
        challenge_args: ``tw-make`` flags for the challenge (default ``DEFAULT_CHALLENGE_ARGS``).
        max_steps: episode length limit; ``truncated`` is True on that step unless it ended.
        success_reward: bonus on the step the game is won.
        keep_banner: keep TextWorld's ASCII-art title in the first observation.
        seed: seeds the env's own generator, used by ``reset(seed=None)``.

    ``reset(seed)`` plays game ``random.Random(seed).randrange(num_games)``
    (``options={"game_index": k}`` plays game ``k``); a generated game is made on first use.

    Reward of a step: ``score_t - score_{t-1}`` (TextWorld's cumulative score, so the rewards of
    an episode add up to its final score), plus ``success_reward`` on the step the game is won.
    ``terminated`` is True when the game is won or lost. ``info["valid"]`` is False when the
    command (lowercased, whitespace collapsed) is not among the admissible commands listed before
    the step; it is still sent to TextWorld, whose reply is the observation, and its reward is the
    score delta as above (0 for a command the game rejects).

    ``info`` also holds ``"lost"``, ``"score"``, ``"max_score"``, ``"walkthrough"`` (the game's
    walkthrough, or the winning policy from the start when the game has none),
    ``"policy_commands"`` (a winning command sequence from the current state), ``"game_index"``,
    ``"game_file"`` and ``"split"``.
    """

    def __init__(
        self,
        game_files: Sequence[str | os.PathLike[str]] | None = None,
        *,
        split: str = "train",
        game_type: str | None = None,
        games_dir: str | os.PathLike[str] | None = None,
        num_games: int | None = None,
        challenge_args: Sequence[str] | None = None,
        max_steps: int = 50,
        success_reward: float = 10.0,
        keep_banner: bool = False,
        seed: int | None = None,
    ) -> None:
        self._tw = _textworld()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if game_type is not None and game_type not in CHALLENGES:
            raise ValueError(f"game_type must be one of {CHALLENGES}, got {game_type!r}")
        check_episode_limits(max_steps, success_reward)
        self.split = split
        self.max_steps = max_steps
        self.success_reward = float(success_reward)
        self.keep_banner = keep_banner
        self.game_type = game_type
        self.games_dir = Path(games_dir) if games_dir is not None else default_games_dir()
        if game_files is not None:
            if challenge_args is not None:
                raise ValueError("challenge_args applies to generated games, not to game_files")
            self._files: list[Path] | None = [self._check_game_file(f) for f in game_files]
            if not self._files:
                raise ValueError("game_files must list at least one game, got an empty list")
            if num_games is not None and num_games != len(self._files):
                raise ValueError(
                    f"num_games must equal len(game_files)={len(self._files)}, got {num_games!r}"
                )
            num_games = len(self._files)
            self._challenge_args: tuple[str, ...] = ()
            self.settings: dict[str, Any] = {}
        else:
            self._files = None
            self._challenge_args = tuple(
                DEFAULT_CHALLENGE_ARGS[self.challenge] if challenge_args is None else challenge_args
            )
            self.settings = challenge_settings(self.challenge, split, self._challenge_args)
            if num_games is None:
                num_games = SPLIT_SIZES[split]
        if isinstance(num_games, bool) or not isinstance(num_games, int):
            raise ValueError(f"num_games must be an int, got {num_games!r}")
        if not 1 <= num_games <= _MAX_SEED_SPAN:
            raise ValueError(f"num_games must be in [1, {_MAX_SEED_SPAN}], got {num_games!r}")
        self.num_games = num_games
        self._rng = random.Random(seed)
        self._infos = self._tw.EnvInfos(
            admissible_commands=True,
            won=True,
            lost=True,
            score=True,
            max_score=True,
            objective=True,
            policy_commands=True,
            extras=["walkthrough", "uuid"],
        )
        self._game: Any = None  # the running textworld Environment
        self._game_file: Path | None = None
        self._game_index = -1
        self._state: Any = None
        self._walkthrough: list[str] = []
        self._task_type = ""
        self._steps = 0
        self._done = True

    # ------------------------------------------------------------------ games

    @property
    def challenge(self) -> str:
        """The challenge generated games come from (``game_type``, default ``"tw-simple"``)."""
        return self.game_type or "tw-simple"

    def game_seed(self, index: int) -> int:
        """The generator seed of game ``index`` of this split."""
        self._check_index(index)
        return SPLIT_SEED_BASES[self.split] + index

    def game_path(self, index: int) -> Path:
        """The ``.z8`` file of game ``index``, generated (and cached) first if it is missing."""
        self._check_index(index)
        if self._files is not None:
            return self._files[index]
        flags = "_".join(arg.lstrip("-") for arg in self._challenge_args)
        slug = re.sub(r"[^A-Za-z0-9.=+-]+", "_", flags)
        folder = self.games_dir / f"textworld-{self._tw.__version__}" / self.challenge
        path = folder / (slug or "defaults") / f"{self.split}-{self.game_seed(index):07d}.z8"
        if not path.is_file():
            generate_game(self.challenge, self.settings, self.game_seed(index), path)
        return path

    def _check_game_file(self, file: str | os.PathLike[str]) -> Path:
        path = Path(file)
        if path.suffix == ".ulx":
            raise ValueError(
                f"game_files: {path} is a Glulx game, which TextWorld >= 1.7 cannot play "
                f"(installed: {self._tw.__version__}); regenerate it as .z8"
            )
        if not re.fullmatch(r"\.z[1-8]", path.suffix):
            raise ValueError(f"game_files must be .z1-.z8 TextWorld games, got {str(path)!r}")
        if not path.is_file():
            raise ValueError(f"game_files: no such file {str(path)!r}")
        if not path.with_suffix(".json").is_file():
            raise ValueError(
                f"game_files: {path} has no {path.with_suffix('.json').name} beside it; "
                "only games made by TextWorld (tw-make) are supported"
            )
        return path

    def _check_index(self, index: object) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.num_games:
            raise ValueError(f"game_index must be an int in [0, {self.num_games}), got {index!r}")

    # ------------------------------------------------------------------ protocol

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if seed is not None:
            self._rng = random.Random(seed)
        options = options or {}
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ValueError(
                f"options keys must be among {sorted(_OPTION_KEYS)}, got {sorted(unknown)}"
            )
        if "game_index" in options:
            index = options["game_index"]
            self._check_index(index)
        else:
            index = self._rng.randrange(self.num_games)
        path = self.game_path(index)
        if path != self._game_file:
            self.close()
            with _quiet_jericho():
                self._game = self._tw.start(str(path), request_infos=self._infos)
            self._game_file = path
        state = self._game.reset()
        self._state, self._game_index, self._steps, self._done = state, index, 0, False
        self._walkthrough = list(state.get("extra.walkthrough") or state["policy_commands"] or [])
        self._task_type = self.game_type or _challenge_of(state.get("extra.uuid") or "")
        text = state["feedback"] if self.keep_banner else strip_banner(state["feedback"])
        return text, self._info(valid=True)

    def step(self, action: str) -> StepResult:
        if not isinstance(action, str):
            raise ValueError(f"action must be a str, got {type(action).__name__}")
        if self._done:
            raise RuntimeError("episode is over (or not started): call reset()")
        command = normalize_command(action)
        valid = command in self._state["admissible_commands"]
        previous_score = self._state["score"]
        state, _, _ = self._game.step(command)
        self._state = state
        self._steps += 1
        won, lost = bool(state["won"]), bool(state["lost"])
        terminated = won or lost
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        reward = float(state["score"] - previous_score) + (self.success_reward if won else 0.0)
        return state["feedback"], reward, terminated, truncated, self._info(valid=valid)

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
        self._game, self._game_file, self._done = None, None, True

    def _info(self, *, valid: bool) -> dict[str, Any]:
        state = self._state
        return {
            "admissible_commands": list(state["admissible_commands"] or []),
            "won": bool(state["won"]),
            "lost": bool(state["lost"]),
            "task_type": self._task_type,
            "task": state["objective"],
            "valid": valid,
            "score": state["score"],
            "max_score": state["max_score"],
            "walkthrough": list(self._walkthrough),
            "policy_commands": list(state["policy_commands"] or []),
            "game_index": self._game_index,
            "game_file": str(self._game_file),
            "split": self.split,
        }


def _challenge_of(uuid: str) -> str:
    """The challenge a game's ``uuid`` names (``"tw-cooking-recipe1..."`` -> ``"tw-cooking"``)."""
    for name in CHALLENGES:
        if uuid == name or uuid.startswith(name + "-"):
            return name
    return "custom"


register(
    "textworld",
    TextWorldEnv,
    eval_split="valid",
    role="You are an expert player of a text adventure game.",
)
