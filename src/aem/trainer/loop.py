"""The training loop: collect a :class:`~aem.batch.SpanBatch` (rollout, DAPO's dynamic sampling),
then learn from it through the phases of :mod:`aem.trainer.phases` (score -> reference -> values
-> advantages -> modulation -> analysis -> update -> metrics), with evaluation, atomic
checkpoints and resume."""

from __future__ import annotations

import logging
import random
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import yaml

from aem.agent import PromptConfig
from aem.batch import SpanBatch
from aem.envs.pool import EnvPool
from aem.policy.model import frozen_reference, save_policy, trainable_parameters
from aem.policy.runner import CriticRunner, PolicyRunner
from aem.policy.sampling import SamplingConfig
from aem.policy.tokenizer import ACTION_CLOSE, AgentTokenIds
from aem.policy.value import CriticModel
from aem.rollout import ModelResponder, rollout
from aem.trainer import phases
from aem.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from aem.trainer.config import TrainConfig
from aem.trainer.curves import plot_run
from aem.trainer.initial_policy import initial_policy, load_initial_policy
from aem.trainer.metrics import MetricsWriter, PhaseTimer
from aem.trainer.trackers import RunNaming, make_trackers

logger = logging.getLogger(__name__)


class Trainer:
    """One run: ``Trainer(config, run_dir).train()``; ``resume=True`` continues ``run_dir``."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config = config
        self.algo = config.algorithm.resolved()
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.stop_requested = False
        self.start_iteration = 0
        self.previous_entropy: float | None = None
        self.previous_drift: float | None = None

    # ------------------------------------------------------------------ set-up

    def setup(self) -> None:
        cfg = self.config
        torch.set_num_threads(cfg.trainer.threads)
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is not None and not self.resume:
            raise FileExistsError(
                f"output_dir {self.run_dir} already holds a run; resume it with "
                f"`aem train --resume {self.run_dir}` or choose another output_dir"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.py_random = random.Random(cfg.seed)
        self.sample_generator = torch.Generator().manual_seed(cfg.seed)
        self.shuffle_generator = torch.Generator().manual_seed(cfg.seed + 1)

        init_dir = self.run_dir / "init"
        if self.resume and init_dir.exists():
            self.model, self.tokenizer = load_initial_policy(init_dir)
            self.warm_start_metrics: dict[str, float] = {}
        else:
            self.model, self.tokenizer, self.warm_start_metrics = initial_policy(cfg, init_dir)
            (self.run_dir / "config.yaml").write_text(
                yaml.safe_dump(cfg.model_dump(), sort_keys=False)
            )
        self.model.eval()
        run = {"bf16": cfg.model.bf16, "compile": cfg.model.compile}
        self.policy = PolicyRunner(self.model, cfg.rollout.temperature, **run)
        self.reference = None
        if self.algo.kl_coef > 0:
            reference = frozen_reference(self.model)
            self.reference = PolicyRunner(reference, cfg.rollout.temperature, **run)
        self.optimizer = torch.optim.AdamW(
            trainable_parameters(self.model),
            lr=cfg.optim.lr,
            weight_decay=cfg.optim.weight_decay,
        )
        self.critic = None
        self.critic_optimizer = None
        if self.algo.estimator == "gae":
            critic = CriticModel.from_causal_lm(self.model, seed=cfg.seed).eval()
            self.critic = CriticRunner(critic, **run)
            self.critic_optimizer = torch.optim.AdamW(
                trainable_parameters(critic), lr=self.algo.critic_lr
            )
        self.tokens = AgentTokenIds.of(self.tokenizer)
        env_kwargs = {
            "split": cfg.env.split,
            "max_steps": cfg.env.max_turns,
            "success_reward": cfg.env.success_reward,
            **cfg.env.env_kwargs(),
        }
        self.pool = EnvPool(
            cfg.env.name, self._generation_tasks() * cfg.rollout.group_size, env_kwargs,
            cfg.env.workers,
        )  # fmt: skip
        self._eval_pools: dict[str, EnvPool] = {}
        self.metrics = MetricsWriter(self.run_dir)
        if checkpoint is not None:
            meta = load_checkpoint(
                checkpoint,
                self._modules(),
                self._optimizers(),
                self._generators(),
                self.py_random,
            )
            self.start_iteration = int(meta["iteration"]) + 1
            self.previous_entropy = meta.get("previous_entropy")
            self.previous_drift = meta.get("previous_drift")
            self.metrics.truncate_after(int(meta["iteration"]))
            logger.info("resumed %s at iteration %d", self.run_dir, self.start_iteration)

    def _modules(self) -> dict[str, torch.nn.Module]:
        modules: dict[str, torch.nn.Module] = {"policy": self.model}
        if self.critic is not None:
            modules["critic"] = self.critic.critic
        return modules

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"policy": self.optimizer}
        if self.critic_optimizer is not None:
            optimizers["critic"] = self.critic_optimizer
        return optimizers

    def _generators(self) -> dict[str, torch.Generator]:
        return {"sample": self.sample_generator, "shuffle": self.shuffle_generator}

    def save(self, iteration: int) -> Path:
        return save_checkpoint(
            self.run_dir,
            iteration,
            self._modules(),
            self._optimizers(),
            self._generators(),
            self.py_random,
            extra={
                "previous_entropy": self.previous_entropy,
                "previous_drift": self.previous_drift,
            },
        )

    # ------------------------------------------------------------------ rollout

    def _sampling(self, temperature: float) -> SamplingConfig:
        """Responses end at ``</action>``: one stop token when the tokenizer has it (the tiny
        model), else a stop string (pretrained vocabularies split it into several tokens)."""
        close = self.tokens.action_close
        return self.policy.sampling(
            temperature,
            max_new_tokens=self.config.rollout.max_response_tokens,
            top_p=self.config.rollout.top_p,
            stop_token_ids=() if close is None else (close,),
            stop_strings=(ACTION_CLOSE,) if close is None else (),
        )

    def _prompt(self) -> PromptConfig:
        r = self.config.rollout
        return PromptConfig(style=r.prompt_style, history_length=r.history_length)

    def _rollout(
        self,
        pool: EnvPool,
        seeds: list[int],
        group_size: int,
        temperature: float,
        generator: torch.Generator,
    ) -> SpanBatch:
        cfg = self.config
        responder = ModelResponder(
            model=self.model,
            tokenizer=self.tokenizer,
            sampling=self._sampling(temperature),
            generator=generator,
            max_prompt_tokens=cfg.rollout.max_prompt_tokens,
            max_sequence_tokens=cfg.rollout.max_sequence_tokens,
        )
        return rollout(
            responder,
            pool,
            env_name=cfg.env.name,
            task_seeds=seeds,
            group_size=group_size,
            max_turns=cfg.env.max_turns,
            prompt=self._prompt(),
            invalid_penalty=cfg.env.invalid_penalty,
            layout=cfg.rollout.layout,
        )

    def _generation_tasks(self) -> int:
        """Tasks per rollout batch: ``rollout.tasks``, or with dynamic sampling
        ``generation_tasks`` when set."""
        if self.algo.dynamic_sampling and self.algo.generation_tasks is not None:
            return self.algo.generation_tasks
        return self.config.rollout.tasks

    def _task_seeds(self, count: int) -> list[int]:
        return [self.py_random.randrange(2**31) for _ in range(count)]

    def collect(self) -> tuple[SpanBatch, dict[str, float]]:
        """One iteration's training batch and the episode metrics of everything rolled out.

        With dynamic sampling (DAPO) groups whose trajectories all got the same return are dropped;
        ``generation_tasks`` tasks are rolled out in one batch (more than ``rollout.tasks`` buys
        the kept groups in one pass), then again at most ``max_refills`` times until
        ``rollout.tasks`` groups are kept."""
        r = self.config.rollout
        if not self.algo.dynamic_sampling:
            batch = self._rollout(
                self.pool, self._task_seeds(r.tasks), r.group_size, r.temperature,
                self.sample_generator,
            )  # fmt: skip
            return batch, episode_metrics(batch)
        generation_tasks = self._generation_tasks()
        rolled: list[SpanBatch] = []
        kept_parts: list[SpanBatch] = []
        informative_counts: list[int] = []
        while sum(informative_counts) < r.tasks and len(rolled) <= self.algo.max_refills:
            seeds = self._task_seeds(generation_tasks)
            extra = self._rollout(
                self.pool, seeds, r.group_size, r.temperature, self.sample_generator
            )
            rolled.append(extra)
            informative = informative_groups(extra)
            kept_parts.append(extra.select_groups(informative))
            informative_counts.append(len(informative))
        kept = SpanBatch.concat(kept_parts)
        kept = kept.select_groups(sorted(set(kept["group"].tolist()))[: r.tasks])
        stats = episode_metrics(SpanBatch.concat(rolled))
        stats["rollout/informative_group_frac"] = informative_counts[0] / generation_tasks
        stats["rollout/refills"] = float(len(rolled) - 1)
        stats["rollout/kept_groups"] = float(_num_groups(kept))
        return kept, stats

    # ------------------------------------------------------------------ scoring

    # ------------------------------------------------------------------ one iteration

    def iteration(self, it: int) -> dict[str, Any]:
        """Roll out one batch and learn from it; returns the iteration's metrics."""
        timer = PhaseTimer()
        with timer.phase("rollout"):
            batch, record = self.collect()
        record.update(self.learn(batch, timer))
        record.update(timer.as_metrics())
        if "throughput/tokens" in record:
            record["throughput/tokens_per_s"] = record["throughput/tokens"] / record["time/total"]
        return record

    def learn(self, batch: SpanBatch, timer: PhaseTimer) -> dict[str, Any]:
        """Learn from ``batch``: the phases of :mod:`aem.trainer.phases` in order, each timed
        into ``timer``. Returns their metrics."""
        cfg, algo = self.config, self.algo
        if batch.num_rows == 0:
            return {}
        record: dict[str, Any] = {}
        held = None
        with timer.phase("scoring"):
            if cfg.optim.fused_scoring:  # the update's own forward, held for its step
                held = phases.score_for_update(batch, self.policy, algo.entropy_coef > 0)
            else:
                phases.score(batch, self.policy)
        if self.reference is not None:
            with timer.phase("reference"):
                phases.reference(batch, self.reference)
        if self.critic is not None:
            with timer.phase("critic"):
                phases.values(batch, self.critic)
        with timer.phase("advantage"):
            phases.advantages(batch, algo, cfg.rollout.max_response_tokens)
        with timer.phase("aem"):
            record.update(phases.modulate(batch, cfg.modulation_name(), cfg.modulation_config()))
        record.update(phases.analysis(batch, cfg.analysis.mask_quadrant))
        with timer.phase("update"):
            optim, generator = cfg.optim, self.shuffle_generator
            if held is not None:
                step = (batch, held, self.policy, self.optimizer, algo, optim)
                record.update(phases.update_policy_fused(*step))
            else:
                step = (batch, self.policy, self.optimizer, algo, optim, generator)
                record.update(phases.update_policy(*step))
            if self.critic is not None:
                critic_step = (self.critic, self.critic_optimizer, algo, optim, generator)
                record.update(phases.update_critic(batch, *critic_step))
        if cfg.analysis.same_batch_drift:
            with timer.phase("drift"):
                record.update(phases.same_batch_drift(batch, self.policy))
        record.update(phases.metrics(batch))
        record.update(self._measured_drift(record))
        return record

    def _measured_drift(self, record: dict[str, Any]) -> dict[str, Any]:
        """The entropy change since the last batch beside the drift that batch predicted."""
        entropy_now = record["entropy/response_mean"]
        out = {}
        if self.previous_entropy is not None:
            out["drift/measured_change"] = entropy_now - self.previous_entropy
            out["drift/predicted_previous"] = self.previous_drift
        self.previous_entropy, self.previous_drift = entropy_now, record["drift/total"]
        return out

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, split: str | None = None) -> dict[str, float]:
        """Success on ``eval.tasks`` held-out tasks of ``split`` (default: the evaluation split,
        logged as ``eval/...``; another split as ``eval/<split>/...``) at the validation
        temperature (0.4)."""
        cfg = self.config
        primary = cfg.env.evaluation_split()
        split = primary if split is None else split
        if split not in self._eval_pools:
            kwargs = {
                "split": split,
                "max_steps": cfg.env.max_turns,
                "success_reward": cfg.env.success_reward,
                **cfg.env.env_kwargs(),
            }
            pool = EnvPool(cfg.env.name, cfg.eval.tasks, kwargs, cfg.env.workers)
            self._eval_pools[split] = pool
        generator = torch.Generator().manual_seed(cfg.seed + 12345)  # same draws every eval
        seeds = list(range(cfg.eval.tasks))
        batch = self._rollout(self._eval_pools[split], seeds, 1, cfg.eval.temperature, generator)
        prefix = "eval/" if split == primary else f"eval/{split}/"
        return {
            prefix + key.split("/", 1)[1]: value for key, value in episode_metrics(batch).items()
        }

    def evaluate_all(self) -> dict[str, float]:
        """:meth:`evaluate` on the evaluation split and on every ``eval.extra_splits``."""
        record = self.evaluate()
        for split in self.config.eval.extra_splits:
            record.update(self.evaluate(split))
        return record

    # ------------------------------------------------------------------ the run

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        logger.warning("signal %d: checkpointing after this iteration, then stopping", signum)

    def train(self, progress: Any = None) -> list[dict[str, Any]]:
        """Run the remaining iterations; returns their records. ``progress(it, record)`` is
        called after each iteration (the CLI's progress bar)."""
        self.setup()
        cfg = self.config
        naming = RunNaming(
            self.run_dir, cfg.trainer.experiment, cfg.trainer.run_name, cfg.trainer.group
        )
        self.metrics.attach(
            make_trackers(cfg.trainer.logger, self.run_dir, cfg.model_dump(mode="json"), naming)
        )
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        records = []
        try:
            if self.start_iteration == 0:
                self.metrics.truncate_after(-2)  # a restart before the first checkpoint
                start = {"iteration": -1, **self.warm_start_metrics}
                start.update(self.evaluate_all())
                self.metrics.write(start)
                records.append(start)
            for it in range(self.start_iteration, cfg.trainer.iterations):
                record = {"iteration": it, **self.iteration(it)}
                last = it == cfg.trainer.iterations - 1
                if last:
                    record.update(self.evaluate_all())
                elif cfg.eval.every and (it + 1) % cfg.eval.every == 0:
                    record.update(self.evaluate())
                self.metrics.write(record)
                records.append(record)
                if progress is not None:
                    progress(it, record)
                if (it + 1) % cfg.trainer.checkpoint_every == 0 or last or self.stop_requested:
                    self.save(it)
                if self.stop_requested:
                    break
            if not self.stop_requested:
                save_policy(self.model, self.tokenizer, self.run_dir / "final")
            self.metrics.log_artifact(plot_run(self.run_dir))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()
        return records

    def close(self) -> None:
        self.pool.close()
        for pool in self._eval_pools.values():
            pool.close()
        self.metrics.close()


def _num_groups(batch: SpanBatch) -> int:
    return len(set(batch["group"].tolist()))


def informative_groups(batch: SpanBatch) -> list[int]:
    """Groups whose trajectories did not all get the same return (their advantages are not 0)."""
    returns: dict[int, set[float]] = {}
    for record in batch.trajectories():
        returns.setdefault(record.group_id, set()).add(record.episode_return)
    return sorted(group for group, values in returns.items() if len(values) > 1)


def episode_metrics(batch: SpanBatch) -> dict[str, float]:
    """Success overall and per task type, return, length, invalid-action rate (per trajectory)."""
    trajectories = batch.trajectories()
    if not trajectories:
        return {"rollout/trajectories": 0.0}
    out = {
        "rollout/success": sum(t.won for t in trajectories) / len(trajectories),
        "rollout/return": sum(t.episode_return for t in trajectories) / len(trajectories),
        "rollout/length": sum(t.length for t in trajectories) / len(trajectories),
        "rollout/invalid_rate": sum(t.invalid_turns for t in trajectories)
        / max(1, sum(t.length for t in trajectories)),
        "rollout/errors": float(sum(t.error is not None for t in trajectories)),
        "rollout/context_full": float(sum(t.context_full for t in trajectories)),
        "rollout/trajectories": float(len(trajectories)),
    }
    by_type: dict[str, list[bool]] = defaultdict(list)
    for t in trajectories:
        by_type[t.task_type].append(bool(t.won))
    for task_type, wins in sorted(by_type.items()):
        out[f"rollout/success_{task_type}"] = sum(wins) / len(wins)
    return out
