"""What a comparison sweep runs: its settings, the runs they imply, and ``SWEEP/sweep.yaml``.

Every algorithm runs without modulation (the base) and with each of the sweep's modulations
(default AEM; e.g. also EMPG) for each seed; all runs of one seed start from the same policy,
built once into ``SWEEP/init/seed<k>`` (so the arms of a seed differ only by the modulation).
Analysis A runs (``analysis.mask_quadrant``) use the first algorithm without modulation.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aem.trainer.config import PRESETS, ConfigError, TrainConfig, load_config

SWEEP_FILE = "sweep.yaml"
ANALYSIS_MASKS: tuple[str | None, ...] = (None, "decreasing", "increasing")
"""Figure 2: unmasked, and the loss of the entropy-decreasing / -increasing quadrants zeroed."""

RESERVED_KEYS = {
    "seed": "--seeds",
    "output_dir": "--out",
    "env.name": "--env",
    "algorithm": "--algos",
    "algorithm.name": "--algos",
    "aem.enabled": "--modulations (every algorithm runs without and with each modulation)",
    "modulation": "--modulations (every algorithm runs without and with each modulation)",
    "analysis.mask_quadrant": "--analysis-iterations / --no-analysis",
}
"""Overrides the sweep sets itself, and the option that controls each instead."""

IGNORED_FOR_IDENTITY = (
    "output_dir",
    "seed",
    "trainer.threads",
    "trainer.logger",
    "trainer.experiment",
    "trainer.run_name",
    "trainer.group",
)
"""Settings that do not change what a run computes (where it runs and reports)."""

EVAL_TASKS = 256
"""Held-out tasks per split a sweep evaluates unless told otherwise: one standard error of a
run's success is then at most about 3 points (sqrt(0.25 / 256))."""


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sweep."""

    algo: str
    modulation: str
    seed: int
    iterations: int
    analysis: bool = False
    mask: str | None = None

    @property
    def arm(self) -> str:
        """The runs this one is a seed of: ``grpo``, ``grpo+aem``, ``analysis/unmasked``, …"""
        if self.analysis:
            return f"analysis/{self.mask or 'unmasked'}"
        return arm_name(self.algo, self.modulation)

    @property
    def name(self) -> str:
        return f"{self.arm}/seed{self.seed}"

    def run_dir(self, sweep_dir: Path) -> Path:
        return Path(sweep_dir) / "runs" / self.arm / f"seed{self.seed}"


BASE = "none"
"""The modulation of the base arm: the estimator's advantages unchanged."""


def arm_name(algo: str, modulation: str) -> str:
    """Folder name of an arm: ``grpo`` (no modulation), ``grpo+aem``, ``grpo+empg``."""
    return algo if modulation == BASE else f"{algo}+{modulation}"


def arm_label(algo: str, modulation: str) -> str:
    """Human label of an arm: ``GRPO`` / ``GRPO+AEM`` / ``GRPO+EMPG``."""
    return algo.upper() if modulation == BASE else f"{algo.upper()}+{modulation.upper()}"


def init_dir(sweep_dir: Path, seed: int) -> Path:
    """Where the starting policy shared by every run of ``seed`` lives."""
    return Path(sweep_dir) / "init" / f"seed{seed}"


@dataclass(frozen=True)
class SweepSettings:
    """The settings that define a sweep; a sweep directory only continues with equal ones."""

    env: str
    algos: tuple[str, ...]
    seeds: int
    analysis_iterations: int
    overrides: tuple[str, ...] = field(default_factory=tuple)
    config_file: str | None = None
    modulations: tuple[str, ...] = ("aem",)

    def __post_init__(self) -> None:
        if not self.algos:
            raise ConfigError("--algos must name at least one algorithm")
        unknown = [a for a in self.algos if a not in PRESETS]
        if unknown:
            raise ConfigError(
                f"--algos: unknown algorithm(s) {unknown}; choose from {sorted(PRESETS)}"
            )
        if len(set(self.algos)) != len(self.algos):
            raise ConfigError(f"--algos names an algorithm twice: {list(self.algos)}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"--seeds must be an integer >= 1, got {self.seeds!r}")
        if self.analysis_iterations < 0:
            raise ConfigError(
                f"--analysis-iterations must be >= 1 (or --no-analysis), "
                f"got {self.analysis_iterations}"
            )
        for item in self.overrides:
            key = item.partition("=")[0]
            if key in RESERVED_KEYS:
                raise ConfigError(
                    f"override {item!r}: the sweep sets {key!r} itself; use {RESERVED_KEYS[key]}"
                )
        from aem.algorithms.modulation import modulations

        known = [name for name in modulations() if name != BASE]
        if not self.modulations or set(self.modulations) - set(known):
            raise ConfigError(
                f"--modulations must name one or more of {known}, got {list(self.modulations)}"
            )
        if len(set(self.modulations)) != len(self.modulations):
            raise ConfigError(f"--modulations names one twice: {list(self.modulations)}")
        import aem.envs

        if self.env not in aem.envs.names():
            raise ConfigError(f"--env must be one of {aem.envs.names()}, got {self.env!r}")

    # ------------------------------------------------------------------ configs

    def _config(self, extra: list[str]) -> TrainConfig:
        overrides = [*self.defaults(), *self.overrides, f"env.name={self.env}", *extra]
        return load_config(self.config_file, overrides)

    def defaults(self) -> list[str]:
        """What a sweep sets unless its overrides or config file do: :data:`EVAL_TASKS`
        evaluation tasks, and every held-out split of the environment (its ``EnvSpec``'s
        ``extra_eval_splits`` beside the evaluation split), each reported on its own."""
        import aem.envs

        given = {item.partition("=")[0] for item in self.overrides}
        if self.config_file is not None:
            tree = yaml.safe_load(Path(self.config_file).read_text()) or {}
            given |= {f"eval.{key}" for key in (tree.get("eval") or {})}
        extra = list(aem.envs.spec(self.env).extra_eval_splits)
        wanted = {"eval.tasks": str(EVAL_TASKS), "eval.extra_splits": f"[{', '.join(extra)}]"}
        return [f"{key}={value}" for key, value in wanted.items() if key not in given]

    def base_config(self) -> TrainConfig:
        """The resolved settings every run shares (before its seed, algorithm and AEM switch)."""
        return self._config([])

    def init_config(self, seed: int) -> TrainConfig:
        """Settings that build seed ``seed``'s starting policy (tokenizer, model, warm start)."""
        return self._config([f"seed={seed}"])

    def run_config(self, spec: RunSpec, sweep_dir: Path, threads: int | None = None) -> TrainConfig:
        """Settings of one run: starts from the seed's shared policy, no second warm start."""
        sweep_dir = Path(sweep_dir).resolve()
        extra = [
            f"seed={spec.seed}",
            f"algorithm={spec.algo}",
            *_modulation_overrides(spec.modulation),
            f"model.path={init_dir(sweep_dir, spec.seed)}",
            "warm_start.enabled='off'",  # quoted: YAML reads a bare off as False
            f"output_dir={spec.run_dir(sweep_dir)}",
        ]
        if spec.analysis:
            extra += [f"trainer.iterations={spec.iterations}", "eval.every=0"]
            if spec.mask is not None:
                extra.append(f"analysis.mask_quadrant={spec.mask}")
        if threads is not None:
            extra.append(f"trainer.threads={threads}")
        given = {item.partition("=")[0] for item in self.overrides}
        naming = {"trainer.run_name": spec.name, "trainer.group": sweep_dir.name}
        extra += [f"{key}={value}" for key, value in naming.items() if key not in given]
        return self._config(extra)

    # ------------------------------------------------------------------ plan

    def arm_modulations(self) -> tuple[str, ...]:
        """The modulation of each arm of an algorithm: the base, then the sweep's own."""
        return (BASE, *self.modulations)

    def runs(self) -> list[RunSpec]:
        """Every run, seed by seed (so a killed sweep leaves whole pairs), analysis runs last."""
        iterations = self.base_config().trainer.iterations
        plan = [
            RunSpec(algo, modulation, seed, iterations)
            for seed in range(self.seeds)
            for algo in self.algos
            for modulation in self.arm_modulations()
        ]
        if self.analysis_iterations:
            plan += [
                RunSpec(self.algos[0], BASE, seed, self.analysis_iterations, True, mask)
                for seed in range(self.seeds)
                for mask in ANALYSIS_MASKS
            ]
        return plan

    # ------------------------------------------------------------------ sweep.yaml

    def command(self, sweep_dir: str | Path | None = None) -> str:
        """The ``aem compare`` command that reproduces (or continues) this sweep."""
        parts = ["aem", "compare", "--env", self.env, "--algos", ",".join(self.algos)]
        parts += ["--seeds", str(self.seeds)]
        if self.modulations != ("aem",):
            parts += ["--modulations", ",".join(self.modulations)]
        if self.analysis_iterations:
            parts += ["--analysis-iterations", str(self.analysis_iterations)]
        else:
            parts.append("--no-analysis")
        if self.config_file is not None:
            parts += ["--config", self.config_file]
        if sweep_dir is not None:
            parts += ["--out", str(sweep_dir)]
        return shlex.join([*parts, *self.overrides])

    def identity(self) -> dict[str, Any]:
        """What must match for a sweep directory to be continued."""
        config = _roundtrip(self.base_config().model_dump())
        for dotted in IGNORED_FOR_IDENTITY:
            *parents, leaf = dotted.split(".")
            node = config
            for part in parents:
                node = node[part]
            node.pop(leaf, None)
        identity = {
            "env": self.env,
            "algos": list(self.algos),
            "seeds": self.seeds,
            "analysis_iterations": self.analysis_iterations,
            "config": config,
        }
        if self.modulations != ("aem",):  # sweeps made before --modulations stay continuable
            identity["modulations"] = list(self.modulations)
        return identity

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "algos": list(self.algos),
            "seeds": self.seeds,
            "analysis_iterations": self.analysis_iterations,
            "overrides": list(self.overrides),
            "config_file": self.config_file,
            "modulations": list(self.modulations),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSettings:
        return cls(
            env=data["env"],
            algos=tuple(data["algos"]),
            seeds=int(data["seeds"]),
            analysis_iterations=int(data["analysis_iterations"]),
            overrides=tuple(data.get("overrides") or ()),
            config_file=data.get("config_file"),
            modulations=tuple(data.get("modulations") or ("aem",)),
        )


def _modulation_overrides(modulation: str) -> list[str]:
    """A run's modulation switch; AEM and the base keep the ``aem.enabled`` form of sweeps made
    before ``--modulations``, so their runs stay reusable."""
    if modulation in (BASE, "aem"):
        return [f"aem.enabled={str(modulation == 'aem').lower()}"]
    return [f"modulation={modulation}"]


def _roundtrip(tree: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(tree))


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def write_sweep_file(settings: SweepSettings, sweep_dir: Path) -> Path:
    """Create ``sweep.yaml`` or check an existing one was written with the same settings.

    Raises ``ConfigError`` listing what differs, before anything is trained."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / SWEEP_FILE
    identity = settings.identity()
    if path.exists():
        stored = yaml.safe_load(path.read_text()) or {}
        differences = _differences(stored.get("identity"), identity)
        if differences:
            raise ConfigError(
                f"{sweep_dir} holds a sweep made with other settings ("
                + "; ".join(differences)
                + "); rerun its own command (see sweep.yaml) or choose another --out"
            )
        return path
    sweep_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "command": settings.command(sweep_dir),
        "settings": settings.to_dict(),
        "identity": identity,
        "resolved_config": _roundtrip(settings.base_config().model_dump()),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.replace(path)
    return path


def read_sweep_file(sweep_dir: Path) -> tuple[SweepSettings, dict[str, Any]]:
    """The settings and the whole document of an existing sweep directory."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        raise ConfigError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE})")
    document = yaml.safe_load(path.read_text()) or {}
    return SweepSettings.from_dict(document["settings"]), document
