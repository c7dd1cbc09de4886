"""Training configuration: validated pydantic models, algorithm presets (paper App. D), overrides.

``aem train [--config FILE.yaml] [key=value ...]`` builds one :class:`TrainConfig`: defaults, then
the YAML file, then the dotted overrides (``seed=5 algorithm=dapo aem.enabled=false``). An unknown
key or a bad value is an error that names the key and lists the valid choices. The choices of
environment, estimator, policy loss, aggregation, KL estimator and modulation are read from their
registries when the config is checked, so an entry a user registers is selectable like a built-in
one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aem.algorithms.advantages import GRPO_STATS, STD_SCOPES, advantage_estimators
from aem.algorithms.analysis import QUADRANT_MASKS
from aem.algorithms.kl import kl_kinds
from aem.algorithms.losses import AGG_MODES, policy_losses
from aem.algorithms.modulation import ModulationConfig, modulations
from aem.envs import names as env_names
from aem.envs import spec as env_spec
from aem.envs.registry import check_arguments
from aem.trainer.trackers import TRACKERS, missing_tracker_library


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _one_of(value: Any, choices: list[str] | tuple[str, ...]) -> Any:
    """``value`` when it is one of ``choices`` (or None), else a ValueError listing them."""
    if value is not None and value not in choices:
        raise ValueError(f"must be one of {sorted(choices)}")
    return value


class EnvConfig(_Section):
    name: str = Field("household", description="a registered environment (aem envs)")
    split: str = "train"
    eval_split: str | None = Field(None, description="None: the environment's evaluation split")
    max_turns: int = Field(20, ge=1)
    success_reward: float = 10.0
    invalid_penalty: float = Field(
        0.0, ge=0.0, description="paper: 0.1; 0 for the tiny default (docs/results)"
    )
    workers: int = Field(0, ge=0, description="0: environments in the trainer's process")
    kwargs: dict[str, Any] | None = Field(
        None, description="extra env arguments; None: the environment's default arguments"
    )

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _one_of(value, env_names())

    def env_kwargs(self) -> dict[str, Any]:
        """``kwargs``, or the default arguments of this environment (its ``EnvSpec``) when
        unset."""
        return dict(env_spec(self.name).default_kwargs if self.kwargs is None else self.kwargs)

    def evaluation_split(self) -> str:
        """``eval_split``, or the environment's evaluation split when unset."""
        return self.eval_split or env_spec(self.name).eval_split

    @model_validator(mode="after")
    def _kwargs_fit_the_env(self) -> EnvConfig:
        shared = ["split", "max_steps", "success_reward"]  # what the trainer passes
        check_arguments(self.name, [*shared, *self.env_kwargs()], "env.kwargs")
        return self


class TinyModelConfig(_Section):
    vocab_size: int = Field(1024, ge=300)
    hidden_size: int = Field(96, ge=16)
    layers: int = Field(3, ge=1)
    heads: int = Field(4, ge=1)
    kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(256, ge=16)
    max_positions: int = Field(2048, ge=64)
    tokenizer_episodes: int = Field(300, ge=1, description="expert episodes of tokenizer text")


class LoraModelConfig(_Section):
    """LoRA adapters (peft) on the policy: only they train; the KL reference is the base model."""

    enabled: bool = False
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear", description="'all-linear' (every linear layer but the LM head) or names"
    )


class ModelConfig(_Section):
    path: str = Field(
        "tiny",
        description="'tiny' (built offline), a registered pretrained name (smollm2-135m, needs "
        "aem[smollm2]) or a Hugging Face model path",
    )
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig)
    bf16: bool = Field(False, description="bf16 autocast (speed: docs/benchmarks.md)")
    lora: LoraModelConfig = Field(default_factory=LoraModelConfig)
    compile: bool = Field(
        False,
        description="torch.compile the model bodies that scoring, the reference, the critic and "
        "the update run (sampling and the warm start stay eager); compiles first, then faster "
        "passes (docs/benchmarks.md)",
    )


class RolloutConfig(_Section):
    tasks: int = Field(4, ge=1, description="groups (tasks) per iteration")
    group_size: int = Field(8, ge=1, description="trajectories per task")
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_response_tokens: int = Field(24, ge=1)
    max_prompt_tokens: int = Field(384, ge=8)
    history_length: int = Field(0, ge=0)
    prompt_style: Literal["full", "compact"] = "compact"
    layout: Literal["turn", "trajectory"] = Field(
        "turn",
        description="turn: one row per turn, prompt rebuilt each turn (verl-agent); trajectory: "
        "one growing sequence per trajectory, KV cache kept across turns (rLLM)",
    )
    max_sequence_tokens: int | None = Field(
        None,
        ge=8,
        description="trajectory layout: longest sequence (>= max_prompt_tokens + "
        "max_response_tokens); None = the model's limit",
    )

    @model_validator(mode="after")
    def _first_turn_fits(self) -> RolloutConfig:
        first_turn = self.max_prompt_tokens + self.max_response_tokens
        if self.max_sequence_tokens is not None and self.max_sequence_tokens < first_turn:
            raise ValueError(
                f"rollout.max_sequence_tokens must be >= max_prompt_tokens + max_response_tokens"
                f" = {first_turn}, got {self.max_sequence_tokens}"
            )
        return self


class AlgorithmConfig(_Section):
    """One preset per base method of the paper (App. D); any field set here overrides it. The
    estimator, loss, aggregation and KL estimator are checked against their registries
    (``aem.algorithms``)."""

    name: str = Field("grpo", description="a preset (PRESETS)")
    estimator: str | None = None
    loss: str | None = None
    clip_low: float | None = Field(None, gt=0.0)
    clip_high: float | None = Field(None, gt=0.0)
    dual_clip_c: float | None = Field(None, gt=1.0)
    agg_mode: str | None = None
    norm_length: float | None = Field(
        None, gt=0.0, description="seq-mean-token-sum-norm: the constant length; None = padded"
    )
    kl_coef: float | None = Field(None, ge=0.0)
    kl_kind: str = Field("k3", description="k1, k2, k3, abs or verl's names; '+': k2 gradient")
    kl_clamp: float | None = Field(10.0, gt=0.0, description="bound of the k3 value; None: none")
    entropy_coef: float = Field(0.0, ge=0.0, description="AEM needs none")
    grpo_stats: str = Field("turn", description="group statistics over turns or trajectories")
    norm_by_std: bool | None = None
    std_scope: str = Field(
        "group",
        description="grpo: divide by the group's or the batch's std (TRL scale_rewards=group|batch;"
        " its none is norm_by_std=false)",
    )
    kl_bias_correction: bool = Field(
        False, description="KL term times the importance ratio (TRL use_bias_correction_kl)"
    )
    advantage_eps: float = Field(1e-6, ge=0.0, description="added to the group std")
    dynamic_sampling: bool | None = None
    max_refills: int = Field(2, ge=0, description="dynamic sampling: extra rollouts at most")
    generation_tasks: int | None = Field(
        None,
        ge=1,
        description="dynamic sampling: tasks rolled out in one batch, first and per refill "
        "(verl's data.gen_batch_size); None = rollout.tasks",
    )
    overlong_buffer: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="DAPO's soft overlong penalty: last fraction of "
        "rollout.max_response_tokens over which the score falls by overlong_factor; 0 = off",
    )
    overlong_factor: float = Field(1.0, gt=0.0)
    gamma: float = Field(1.0, ge=0.0, le=1.0)
    lam: float = Field(1.0, ge=0.0, le=1.0)
    gae_whiten: bool = Field(True, description="gae: whiten advantages over the batch's tokens")
    gigpo_step_weight: float = Field(1.0, ge=0.0, description="gigpo: omega of the step level")
    gigpo_step_gamma: float = Field(0.95, ge=0.0, le=1.0, description="gigpo: step discount")
    critic_lr: float = Field(1e-3, gt=0.0)
    value_clip: float = Field(0.5, gt=0.0, description="critic: clip of the value change")

    @field_validator("name")
    @classmethod
    def _preset(cls, value: str) -> str:
        return _one_of(value, list(PRESETS))

    @field_validator("estimator")
    @classmethod
    def _estimator(cls, value: str | None) -> str | None:
        return _one_of(value, advantage_estimators())

    @field_validator("loss")
    @classmethod
    def _loss(cls, value: str | None) -> str | None:
        return _one_of(value, policy_losses(aliases=True))

    @field_validator("agg_mode")
    @classmethod
    def _agg_mode(cls, value: str | None) -> str | None:
        return _one_of(value, AGG_MODES)

    @field_validator("kl_kind")
    @classmethod
    def _kl_kind(cls, value: str) -> str:
        return _one_of(value, kl_kinds())

    @field_validator("grpo_stats")
    @classmethod
    def _grpo_stats(cls, value: str) -> str:
        return _one_of(value, GRPO_STATS)

    @field_validator("std_scope")
    @classmethod
    def _std_scope(cls, value: str) -> str:
        return _one_of(value, STD_SCOPES)

    def resolved(self) -> AlgorithmConfig:
        """This config with every ``None`` filled from the preset of ``name``."""
        preset = PRESETS[self.name]
        values = {key: preset.get(key) if value is None else value for key, value in self}
        return AlgorithmConfig(**values)


PRESETS: dict[str, dict[str, Any]] = {
    "grpo": dict(estimator="grpo", loss="ppo", clip_low=0.2, clip_high=0.2, dual_clip_c=3.0,
                 agg_mode="token-mean", kl_coef=0.01, norm_by_std=True, dynamic_sampling=False,
                 overlong_buffer=0.0),
    "dapo": dict(estimator="grpo", loss="ppo", clip_low=0.2, clip_high=0.28, dual_clip_c=3.0,
                 agg_mode="token-mean", kl_coef=0.01, norm_by_std=True, dynamic_sampling=True,
                 overlong_buffer=0.25),
    "gspo": dict(estimator="grpo", loss="gspo", clip_low=3e-4, clip_high=4e-4, dual_clip_c=None,
                 agg_mode="seq-mean-token-mean", kl_coef=0.01, norm_by_std=True,
                 dynamic_sampling=False, overlong_buffer=0.0),
    "rloo": dict(estimator="rloo", loss="ppo", clip_low=0.2, clip_high=0.28, dual_clip_c=3.0,
                 agg_mode="seq-mean-token-sum", kl_coef=0.0, norm_by_std=False,
                 dynamic_sampling=True, overlong_buffer=0.0),
    "ppo": dict(estimator="gae", loss="ppo", clip_low=0.2, clip_high=0.2, dual_clip_c=3.0,
                agg_mode="token-mean", kl_coef=0.01, norm_by_std=False, dynamic_sampling=False,
                overlong_buffer=0.0),
    "gigpo": dict(estimator="gigpo", loss="ppo", clip_low=0.2, clip_high=0.2, dual_clip_c=3.0,
                  agg_mode="token-mean", kl_coef=0.01, norm_by_std=True, dynamic_sampling=False,
                  overlong_buffer=0.0),
}  # fmt: skip
"""Paper App. D: DAPO = clip-higher 0.28 + token-mean + dynamic sampling + soft overlong penalty
(over the last quarter of the response budget; DAPO used 4k of 20k tokens); GSPO = sequence ratio
with its small clip range; RLOO = DeepSWE's leave-one-out, no KL, seq-mean-token-sum."""


class AEMConfig(_Section):
    enabled: bool = Field(True, description="false: modulation none (unless modulation is set)")
    temperature: float = Field(1.0, ge=0.0, description="tau of Eq. 15; the paper uses 1")
    eps: float = Field(1e-6, ge=0.0)


class EMPGConfig(_Section):
    """EMPG's hyper-parameters (``modulation=empg``; :mod:`aem.algorithms.empg`), its published
    defaults."""

    k: float = Field(1.0, ge=0.0, description="k of Eq. 10 (self-calibrating scale g)")
    k_future: float = Field(1.0, ge=0.0, description="k_f of Eq. 11 (future clarity f)")
    zeta: float = Field(0.1, ge=0.0, description="zeta of Eq. 8 (weight of the next step's f)")


class OptimConfig(_Section):
    lr: float = Field(3e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    epochs: int = Field(1, ge=1, description="PPO epochs over each batch")
    mini_batch_rows: int = Field(256, ge=1)
    fused_scoring: bool = Field(
        False,
        description="one step per batch from the scoring pass's own forward (TRL's "
        "num_iterations=1): old log-probs and entropy come from it, no separate scoring pass; "
        "needs epochs=1, the whole batch is one mini-batch (mini_batch_rows unused) and its "
        "graph is held until the step",
    )
    micro_batch_tokens: int = Field(
        16384,
        ge=1,
        description="padded tokens per forward/backward: a mini-batch runs as length-sorted "
        "micro-batches with accumulated gradients (same step, less padding and memory)",
    )

    @model_validator(mode="after")
    def _fused_scoring_takes_one_epoch(self) -> OptimConfig:
        if self.fused_scoring and self.epochs != 1:
            raise ValueError(
                f"optim.fused_scoring needs optim.epochs=1 (the old log-probs are the update's "
                f"own), got optim.epochs={self.epochs}"
            )
        return self


class WarmStartConfig(_Section):
    enabled: Literal["auto", "on", "off"] = Field("auto", description="auto: fresh tiny model")
    episodes: int = Field(1000, ge=1)
    noise: float = Field(0.1, ge=0.0, le=1.0, description="share of random admissible actions")
    labels: Literal["auto", "taken", "expert"] = Field(
        "auto",
        description="expert: label noisy-play states with the expert's action (DAgger); taken: "
        "the action played; auto: expert where the env has an observation-only expert",
    )
    invalid_noise: float = Field(
        0.15, ge=0.0, le=1.0, description="share of refused actions in play (expert labels only)"
    )
    steps: int = Field(1000, ge=0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    cosine: bool = Field(False, description="warm-up then cosine decay of lr (else constant)")

    @field_validator("enabled", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        """YAML reads a bare ``on`` / ``off`` as a boolean."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class EvalConfig(_Section):
    every: int = Field(6, ge=0, description="iterations between evaluations; 0 = only at the end")
    tasks: int = Field(64, ge=1)
    temperature: float = Field(0.4, ge=0.0, description="the paper's validation temperature")
    extra_splits: list[str] = Field(
        default_factory=list,
        description="held-out splits evaluated beside the evaluation split, with the first and "
        "the last evaluation only, logged as eval/<split>/... (aem compare: the environment's "
        "other evaluation splits)",
    )


class AnalysisConfig(_Section):
    mask_quadrant: str | None = Field(
        None, description="Analysis A: zero the loss of responses in these quadrants"
    )
    same_batch_drift: bool = Field(
        False,
        description="after the update, re-score the same batch and log the measured change of "
        "its token entropy beside the token-level prediction (one extra scoring pass)",
    )

    @field_validator("mask_quadrant")
    @classmethod
    def _quadrant(cls, value: str | None) -> str | None:
        return _one_of(value, QUADRANT_MASKS)


class TrainerConfig(_Section):
    iterations: int = Field(24, ge=0)
    checkpoint_every: int = Field(5, ge=1)
    threads: int = Field(1, ge=1, description="torch threads (speed: docs/benchmarks.md)")
    logger: list[str] = Field(
        default_factory=lambda: ["console", "tensorboard"],
        description="where the run reports besides metrics.jsonl, as verl's trainer.logger: "
        "console, tensorboard, wandb, mlflow (wandb/mlflow: extra aem[trackers])",
    )
    experiment: str = Field("aem", min_length=1, description="W&B project / MLflow experiment")
    run_name: str | None = Field(None, description="tracker run name (default: the run folder)")
    group: str | None = Field(None, description="tracker group (aem compare: the sweep)")

    @field_validator("logger", mode="before")
    @classmethod
    def _logger(cls, value: Any) -> Any:
        """``console,wandb`` or ``[console, wandb]``; every entry one of the trackers."""
        if isinstance(value, str):
            value = [part.strip() for part in value.strip("[]").split(",") if part.strip()]
        if isinstance(value, list | tuple):
            for name in value:
                _one_of(name, list(TRACKERS))
            if len(set(value)) != len(value):
                raise ValueError(f"names a tracker twice: {list(value)}")
            for name in value:
                missing = missing_tracker_library(name)
                if missing is not None:
                    raise ValueError(missing)
        return value


class TrainConfig(_Section):
    seed: int = 0
    output_dir: str = "runs/default"
    env: EnvConfig = Field(default_factory=EnvConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    modulation: str | None = Field(
        None, description="aem, empg, none or a registered modulation; None: aem.enabled decides"
    )
    aem: AEMConfig = Field(default_factory=AEMConfig)
    empg: EMPGConfig = Field(default_factory=EMPGConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @field_validator("modulation")
    @classmethod
    def _modulation(cls, value: str | None) -> str | None:
        return _one_of(value, modulations())

    def modulation_name(self) -> str:
        """The modulation of the advantages: ``modulation`` when set, else ``aem`` when
        ``aem.enabled`` and ``none`` when not."""
        if self.modulation is not None:
            return self.modulation
        return "aem" if self.aem.enabled else "none"

    def modulation_config(self) -> ModulationConfig:
        """The hyper-parameters every registered modulation reads (``aem.*``, ``empg.*``)."""
        return ModulationConfig(
            temperature=self.aem.temperature,
            eps=self.aem.eps,
            empg_k=self.empg.k,
            empg_k_future=self.empg.k_future,
            empg_zeta=self.empg.zeta,
        )

    @model_validator(mode="after")
    def _aem_not_both_on_and_off(self) -> TrainConfig:
        if self.modulation == "aem" and not self.aem.enabled:
            raise ValueError("modulation=aem contradicts aem.enabled=false; set one of them")
        return self

    @model_validator(mode="after")
    def _generation_tasks_need_dynamic_sampling(self) -> TrainConfig:
        algo = self.algorithm.resolved()
        if algo.generation_tasks is not None and not algo.dynamic_sampling:
            raise ValueError(
                f"algorithm.generation_tasks={algo.generation_tasks} needs dynamic sampling, "
                f"which algorithm={algo.name} has off; set algorithm.dynamic_sampling=true"
            )
        return self

    @model_validator(mode="after")
    def _check_heads(self) -> TrainConfig:
        tiny = self.model.tiny
        if tiny.heads % tiny.kv_heads or tiny.hidden_size % tiny.heads:
            raise ValueError(
                "model.tiny: heads must divide hidden_size and kv_heads must divide heads, got "
                f"hidden_size={tiny.hidden_size}, heads={tiny.heads}, kv_heads={tiny.kv_heads}"
            )
        return self


class ConfigError(ValueError):
    """A bad config file, key or value; the message names it and the valid choices."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "algorithm=dapo"]`` -> nested dict; values are parsed as YAML scalars.

    ``algorithm=NAME`` is short for ``algorithm.name=NAME``.
    """
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override must look like key=value, got {item!r}")
        value = yaml.safe_load(raw) if raw else ""
        path = key.split(".")
        if path == ["algorithm"]:
            path = ["algorithm", "name"]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} sets a field inside a value")
        node[path[-1]] = value
    return tree


def _check_keys(model: type[BaseModel], tree: dict[str, Any], prefix: str = "") -> None:
    for key, value in tree.items():
        fields = model.model_fields
        if key not in fields:
            raise ConfigError(
                f"unknown config key {prefix + key!r}; valid keys here: {sorted(fields)}"
            )
        annotation = fields[key].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {prefix + key!r} is a section, got {value!r}")
            _check_keys(annotation, value, prefix + key + ".")


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "kwargs":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults <- YAML file <- ``key=value`` overrides, validated."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"config file {path}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {_one_line(error)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            kind = type(loaded).__name__
            raise ConfigError(f"config file {path} must hold a mapping, got {kind}")
        tree = loaded or {}
    tree = _merge(tree, parse_overrides(overrides or []))
    _check_keys(TrainConfig, tree)
    try:
        return TrainConfig(**tree)
    except ValidationError as error:
        raise ConfigError(_explain(error)) from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _explain(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "config"
        lines.append(f"{where}: {problem['msg']} (got {problem.get('input')!r})")
    return "invalid config: " + "; ".join(lines)
