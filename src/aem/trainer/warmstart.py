"""Supervised warm start: behaviour cloning of a noisy scripted expert.

The paper starts RL from an instruct model that already answers in the agent format. A tiny
model trained from scratch gets the same starting point here: it imitates episodes played by the
environment's scripted expert (its :class:`aem.envs.EnvSpec`), which plays a random admissible
action with probability ``noise`` and, with probability ``invalid_noise``, a refused one. Each
turn is labelled either with the action played (``labels="taken"``) or with the noise-free
expert's action in the state the noisy play reached (``labels="expert"``, DAgger-style; it needs
an observation expert, whose choice is a function of the prompt), so the model learns the
response grammar ``<think></think><action>...</action>``, the flavour of good actions and how to
recover from a detour. The episodes are played by :func:`aem.rollout.rollout` itself, so the warm
start sees exactly the prompts RL will see.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase

from aem.agent import PromptConfig
from aem.batch import SpanBatch
from aem.checks import require_int_at_least, require_positive
from aem.envs import TextEnv, make, spec
from aem.envs.pool import EnvPool
from aem.policy.runner import PolicyRunner
from aem.policy.tokenizer import ACTION_CLOSE, ACTION_OPEN, THINK_CLOSE, THINK_OPEN
from aem.rollout import FunctionResponder, TurnContext, encode_prompt, rollout

SEARCH_PLACEHOLDER = "<your query>"
"""WebShop's admissible ``search[<your query>]``; a random agent fills in words of the task."""

_EPISODE_CHUNK = 32
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def format_response(action: str) -> str:
    """The response the agent format expects for ``action``, with an empty thought."""
    return f"{THINK_OPEN}{THINK_CLOSE}{ACTION_OPEN}{action}{ACTION_CLOSE}"


class NoisyExpert:
    """An actor for :class:`aem.rollout.FunctionResponder` that plays the scripted expert.

    The expert is the environment's (:class:`aem.envs.EnvSpec`). An observation expert sees the
    turn's context with the prompt's ``history_length``. An episode expert needs state the pool
    does not expose, so each pool environment is then mirrored by a private shadow environment:
    reset with the same seed and options on turn 0, then stepped with the action the trajectory
    took last (environments are deterministic, and a diverging mirror raises). With probability
    ``noise`` a random admissible action replaces the expert's, and with probability
    ``invalid_noise`` an inadmissible one (an admissible command with its object number changed,
    the kind of slip a small model makes), so that play also visits the states after a refused
    action. All draws come from ``random.Random(seed)``.
    """

    def __init__(
        self,
        env_name: str,
        env_kwargs: dict[str, Any] | None = None,
        noise: float = 0.0,
        seed: int = 0,
        history_length: int = 2,
        invalid_noise: float = 0.0,
    ) -> None:
        self.spec = spec(env_name)
        if not self.spec.has_expert:
            raise ValueError(f"environment {env_name!r} has no expert to imitate (EnvSpec)")
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        if not 0.0 <= invalid_noise <= 1.0:
            raise ValueError(f"invalid_noise must be in [0, 1], got {invalid_noise!r}")
        require_int_at_least("history_length", history_length, 0)
        self.env_name = env_name
        self.env_kwargs = dict(env_kwargs or {})
        self.noise = noise
        self.invalid_noise = invalid_noise
        self.history_length = history_length
        self._rng = random.Random(seed)
        self._shadows: dict[int, TextEnv] = {}
        self._experts: dict[int, Callable[[dict[str, Any]], str]] = {}

    def __call__(self, prompts: list[str], contexts: list[TurnContext]) -> list[str]:
        return [format_response(self.action(context)) for context in contexts]

    def expert_action(self, context: TurnContext) -> str:
        """The noise-free action of an observation expert for ``context`` (a function of what
        the prompt shows, so it is the label of that prompt)."""
        observation_expert = self.spec.observation_expert
        if observation_expert is None:
            raise ValueError(
                f"expert labels need an observation expert; {self.env_name!r} has none (EnvSpec)"
            )
        return observation_expert(context, self.history_length)

    def action(self, context: TurnContext) -> str:
        """The (possibly noisy) expert action for this turn of ``context``'s trajectory."""
        observation_expert = self.spec.observation_expert
        info = context.info if observation_expert is not None else self._mirror(context)
        admissible = list(info.get("admissible_commands", []))
        if admissible and self._rng.random() < self.noise:
            return self._fill_placeholder(self._rng.choice(admissible), context.task)
        if admissible and self.invalid_noise and self._rng.random() < self.invalid_noise:
            return self._inadmissible(admissible)
        if observation_expert is not None:
            return observation_expert(context, self.history_length)
        return self._experts[context.env_index](info)

    def _mirror(self, context: TurnContext) -> dict[str, Any]:
        index = context.env_index
        if context.turn == 0:
            shadow = self._shadows.get(index) or make(self.env_name, **self.env_kwargs)
            self._shadows[index] = shadow
            observation, info = shadow.reset(seed=context.seed, options=context.reset_options)
            assert self.spec.episode_expert is not None
            self._experts[index] = self.spec.episode_expert(shadow)
        else:
            shadow = self._shadows[index]
            observation, _, _, _, info = shadow.step(context.history[-1][1])
        if observation != context.observation:
            raise RuntimeError(
                f"shadow of environment {index} diverged at turn {context.turn}: "
                f"{observation[:80]!r} != {context.observation[:80]!r}"
            )
        return info

    def close(self) -> None:
        """Close the shadow environments."""
        for shadow in self._shadows.values():
            shadow.close()
        self._shadows.clear()
        self._experts.clear()

    def _inadmissible(self, admissible: list[str], tries: int = 8) -> str:
        """An admissible command with its last number changed so that it is no longer
        admissible (``take apple 2 from fridge 1`` -> ``take apple 3 from fridge 1``); an
        admissible command when no such change is found in ``tries`` draws."""
        numbered = [command for command in admissible if _LAST_NUMBER.search(command)]
        for _ in range(tries if numbered else 0):
            command = self._rng.choice(numbered)
            match = _LAST_NUMBER.search(command)
            assert match is not None
            number = int(match.group(1))
            other = self._rng.choice([n for n in range(1, number + 3) if n != number])
            candidate = command[: match.start(1)] + str(other) + command[match.end(1) :]
            if candidate not in admissible:
                return candidate
        return self._rng.choice(admissible)

    def _fill_placeholder(self, action: str, task: str) -> str:
        if SEARCH_PLACEHOLDER not in action:
            return action
        words = task.split() or ["item"]
        query = " ".join(self._rng.sample(words, min(3, len(words))))
        return action.replace(SEARCH_PLACEHOLDER, query)


SftTurn = tuple[list[int], list[int], bool]
"""One turn of a warm-start example: the tokens it adds before its response, the response tokens,
and whether the response carries loss."""


def _expert_play(
    env_name: str,
    num_episodes: int,
    noise: float,
    seed: int,
    prompt: PromptConfig,
    max_turns: int,
    env_kwargs: dict[str, Any] | None,
    labels: Literal["taken", "expert"],
    invalid_noise: float,
    layout: str = "turn",
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_prompt_tokens: int | None = None,
) -> Iterator[tuple[SpanBatch, list[str]]]:
    """Noisy-expert episodes in chunks: each chunk's batch (``layout``, tokenized when a
    ``tokenizer`` is given) and the label text of each of its turns."""
    require_int_at_least("num_episodes", num_episodes, 1)
    if labels not in ("taken", "expert"):
        raise ValueError(f"labels must be 'taken' or 'expert', got {labels!r}")
    if invalid_noise and labels != "expert":
        raise ValueError(f"invalid_noise={invalid_noise!r} needs labels='expert', got {labels!r}")
    rng = random.Random(seed)
    task_seeds = [rng.randrange(2**31) for _ in range(num_episodes)]
    actor = NoisyExpert(
        env_name,
        env_kwargs,
        noise,
        seed=rng.randrange(2**31),
        history_length=prompt.history_length,
        invalid_noise=invalid_noise,
    )
    expert_labels: dict[tuple[int, int], str] = {}

    def play(prompts: list[str], contexts: list[TurnContext]) -> list[str]:
        if labels == "expert":
            for context in contexts:
                label = format_response(actor.expert_action(context))
                expert_labels[context.env_index, context.turn] = label
        return actor(prompts, contexts)

    responder = FunctionResponder(play, tokenizer, max_prompt_tokens)
    try:
        for start in range(0, num_episodes, _EPISODE_CHUNK):
            chunk = task_seeds[start : start + _EPISODE_CHUNK]
            expert_labels.clear()
            with EnvPool(env_name, len(chunk), env_kwargs) as pool:
                batch = rollout(
                    responder, pool, env_name, chunk, 1, max_turns, prompt, layout=layout
                )
            texts = batch["response_text"]
            if labels == "expert":
                keys = zip(batch["traj"].tolist(), batch["turn"].tolist(), strict=True)
                texts = [expert_labels[key] for key in keys]
            yield batch, texts
    finally:
        actor.close()


def expert_dataset(
    env_name: str,
    num_episodes: int,
    noise: float,
    seed: int,
    prompt: PromptConfig,
    max_turns: int,
    env_kwargs: dict[str, Any] | None = None,
    labels: Literal["taken", "expert"] = "taken",
    invalid_noise: float = 0.0,
) -> list[tuple[str, str]]:
    """``(prompt text, response text)`` for every turn of ``num_episodes`` noisy-expert episodes.

    Task seeds and noise both derive from ``seed``. The response is :func:`format_response` of
    the label; :func:`supervised_finetune` appends the tokenizer's eos to it. ``labels="taken"``
    labels a turn with the action played (noise included); ``labels="expert"`` with the
    noise-free expert's action in the state the noisy play reached (DAgger-style: the noise only
    widens the states seen, so the model also learns to recover from detours). Expert labels
    need an observation expert (:class:`aem.envs.EnvSpec`); ``invalid_noise`` (refused
    actions, see :class:`NoisyExpert`) needs expert labels, so no label is a refused action.
    """
    pairs: list[tuple[str, str]] = []
    for batch, texts in _expert_play(
        env_name, num_episodes, noise, seed, prompt, max_turns, env_kwargs, labels, invalid_noise
    ):
        pairs.extend(zip(batch["prompt_text"], texts, strict=True))
    return pairs


def expert_trajectories(
    env_name: str,
    num_episodes: int,
    noise: float,
    seed: int,
    prompt: PromptConfig,
    max_turns: int,
    tokenizer: PreTrainedTokenizerBase,
    max_prompt_tokens: int,
    env_kwargs: dict[str, Any] | None = None,
    labels: Literal["taken", "expert"] = "taken",
    invalid_noise: float = 0.0,
    max_sequence_tokens: int | None = None,
) -> list[list[SftTurn]]:
    """The same episodes as :func:`expert_dataset`, for the trajectory layout: each episode is
    one example, its turns tokenized as the rollout's ``layout="trajectory"`` feeds them (the
    sequence holds the actions played, noise included). A turn carries loss where the action
    played is its label (with ``labels="expert"``: not on the noisy turns, but on the expert's
    turns after them, so recovering from a detour is still taught). An episode keeps the turns
    that fit in ``max_sequence_tokens`` (the rollout ends a trajectory there too); episodes with
    no trained turn are left out."""
    examples: list[list[SftTurn]] = []
    for batch, texts in _expert_play(
        env_name,
        num_episodes,
        noise,
        seed,
        prompt,
        max_turns,
        env_kwargs,
        labels,
        invalid_noise,
        layout="trajectory",
        tokenizer=tokenizer,
        max_prompt_tokens=max_prompt_tokens,
    ):
        episodes: dict[int, list[SftTurn]] = {}
        lengths: dict[int, int] = {}
        tokens = batch.turn_tokens()
        for span, traj in enumerate(batch["traj"].tolist()):
            trained = batch["response_text"][span] == texts[span]
            turn = (*tokens[span], trained)
            lengths[traj] = lengths.get(traj, 0) + len(turn[0]) + len(turn[1])
            if max_sequence_tokens is None or lengths[traj] <= max_sequence_tokens:
                episodes.setdefault(traj, []).append(turn)
        examples.extend(e for e in episodes.values() if any(t[2] for t in e))
    return examples


def corpus_texts(
    env_name: str,
    num_episodes: int,
    seed: int,
    prompt: PromptConfig | None = None,
    max_turns: int = 30,
    noise: float = 0.3,
) -> list[str]:
    """Texts to train the tokenizer on: ``prompt + response`` of each turn of noisy-expert
    episodes (``prompt`` defaults to the compact style of the tiny model)."""
    prompt = prompt or PromptConfig(style="compact")
    pairs = expert_dataset(env_name, num_episodes, noise, seed, prompt, max_turns)
    return [p + r for p, r in pairs]


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    max_prompt_tokens: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids (left-truncated to ``max_prompt_tokens``) and response ids followed by eos."""
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer must define eos_token_id")
    eos = int(tokenizer.eos_token_id)
    prompts = [encode_prompt(tokenizer, p, max_prompt_tokens) for p, _ in pairs]
    responses = [
        [int(t) for t in tokenizer(r, add_special_tokens=False)["input_ids"]] + [eos]
        for _, r in pairs
    ]
    return prompts, responses


def budget_overrun(lengths: Sequence[int], budget: int, key: str) -> str | None:
    """A warning when some expert responses (``lengths`` in tokens, eos excluded) are longer than
    the rollout's response budget ``budget`` (config ``key``): the policy is cloned on them but
    can never finish them in a rollout. ``None`` when every response fits."""
    over = [n for n in lengths if n > budget]
    if not over:
        return None
    return (
        f"warm start: {len(over)} of {len(lengths)} expert responses are longer than "
        f"{key}={budget} tokens (longest {max(over)}); rollouts cut them before their action "
        f"closes, so raise {key} to at least {max(over)}"
    )


def sft_lr_factor(step: int, steps: int, warmup: float = 0.05, floor: float = 0.1) -> float:
    """Learning-rate multiplier of step ``step`` of ``steps``: linear warm-up over the first
    ``warmup`` fraction, then cosine decay from 1 to ``floor``."""
    warm = max(1, round(warmup * steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def supervised_finetune(
    policy: PolicyRunner,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_prompt_tokens: int = 512,
    cosine: bool = False,
) -> list[float]:
    """Behaviour cloning on ``(prompt, response)`` text pairs (:func:`tokenize_pairs`: eos after
    each response); see :func:`finetune_examples`."""
    if len(pairs) == 0:
        raise ValueError("pairs must not be empty")
    prompts, responses = tokenize_pairs(tokenizer, pairs, max_prompt_tokens)
    examples = [[(p, r, True)] for p, r in zip(prompts, responses, strict=True)]
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    return finetune_examples(policy, examples, pad_id, steps, batch_size, lr, seed, cosine)


def _pack_examples(examples: Sequence[Sequence[SftTurn]], pad_id: int) -> SpanBatch:
    """One right-padded row per example; the response mask keeps only the spans that carry
    loss."""
    turns = [turn for example in examples for turn in example]
    owner = [k for k, example in enumerate(examples) for _ in example]
    packed = SpanBatch.from_turns(
        [t[0] for t in turns], [t[1] for t in turns], owner, "trajectory", pad_id
    )
    for span, turn in enumerate(turns):
        if not turn[2]:
            row, start = int(packed.span_row[span]), int(packed.span_start[span])
            packed.response_mask[row, start : start + len(turn[1])] = False
    return packed


def finetune_examples(
    policy: PolicyRunner,
    examples: Sequence[Sequence[SftTurn]],
    pad_id: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    cosine: bool = False,
) -> list[float]:
    """Behaviour cloning of ``policy``'s model (at temperature 1, in the runner's precision):
    AdamW on the mean negative log-likelihood of the trained response
    tokens (prompt tokens carry no loss), gradient norm clipped to 1.0, learning rate ``lr``
    (times :func:`sft_lr_factor`, warm-up then cosine decay, if ``cosine``). An example is one
    model row: one turn (:func:`supervised_finetune`) or a whole trajectory
    (:func:`expert_trajectories`). Batches of ``batch_size`` examples are drawn without
    replacement, reshuffling each epoch, from ``torch.Generator().manual_seed(seed)``. Returns
    the loss of every step. The model's train/eval mode is restored afterwards and no gradient
    is left on its parameters (a LoRA run freezes them next: a stale ``.grad`` there would
    outlive the run's optimiser, which holds only the adapters).
    """
    if len(examples) == 0:
        raise ValueError("examples must not be empty")
    require_int_at_least("steps", steps, 1)
    require_int_at_least("batch_size", batch_size, 1)
    require_positive("lr", lr)
    model = policy.model
    device = model.get_input_embeddings().weight.device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: sft_lr_factor(step, steps) if cosine else 1.0
    )
    order: list[int] = []
    losses: list[float] = []
    was_training = model.training
    model.train()
    try:
        for _ in range(steps):
            if len(order) < batch_size:
                order += torch.randperm(len(examples), generator=generator).tolist()
            rows, order = order[:batch_size], order[batch_size:]
            packed = _pack_examples([examples[r] for r in rows], pad_id)
            input_ids, attention_mask, response_mask = (
                t.to(device)
                for t in (packed.input_ids, packed.attention_mask, packed.response_mask)
            )
            out = policy.score(input_ids, attention_mask, response_mask, compute_entropy=False)
            loss = -(out.log_probs * response_mask).sum() / response_mask.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    return losses
