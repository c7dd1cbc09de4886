"""Multi-turn rollout: B tasks x G trajectories x up to T turns, as one flat batch of turns.

Two layouts (``layout=``):

- ``"turn"`` (verl-agent's, the default): every turn's prompt is the task plus a window of recent
  (observation, action) pairs (:func:`aem.agent.build_prompt`), encoded afresh each turn.
- ``"trajectory"`` (rLLM's): a trajectory is one growing sequence. Turn 0 starts it with the
  same first prompt; each later turn appends only the new observation and the admissible actions
  (:func:`aem.agent.build_followup`) after the previous response, and the model keeps its KV
  cache across turns (:class:`aem.policy.session.DecodingSession`), so nothing is encoded twice.
  The agent sees its whole history; a trajectory whose sequence would outgrow
  ``max_sequence_tokens`` ends there (span field ``context_full``).

Either way the result is one :class:`aem.batch.SpanBatch`: the model rows in the rollout's
layout and one span per turn, with the turn's group, trajectory, rewards and texts. Who generates
is a :class:`Responder`:
:class:`ModelResponder` samples from a causal LM (one batched call per turn for every live
environment), :class:`FunctionResponder` wraps a plain Python function (a scripted expert, a random
agent) so the same loop runs without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from aem.agent import (
    INVALID_ACTION_PENALTY,
    PromptConfig,
    build_followup,
    build_prompt,
    parse_response,
)
from aem.agent import turn_reward as agent_turn_reward
from aem.batch import LAYOUTS, SpanBatch
from aem.checks import require_int_at_least
from aem.envs.pool import EnvPool
from aem.policy.sampling import SamplingConfig
from aem.policy.session import DecodingSession

# --------------------------------------------------------------------------- responders


@dataclass(frozen=True)
class TurnContext:
    """What a responder may know about one live environment on this turn.

    ``history`` holds every earlier ``(observation, action)`` pair of the trajectory (the prompt
    shows only the configured window); ``info`` is the environment's latest info dict.
    ``continues`` is True when the prompt continues the trajectory's sequence (trajectory
    layout, turns after the first) instead of starting a new one.
    """

    env_index: int
    group_id: int
    seed: int
    turn: int
    task: str
    observation: str
    info: dict[str, Any]
    history: tuple[tuple[str, str], ...]
    reset_options: dict[str, Any] | None
    continues: bool = False


@dataclass(frozen=True)
class Response:
    """One generated turn: the prompt tokens the turn added (the whole prompt after truncation;
    in the trajectory layout, after turn 0, the continuation), the response tokens (ending with
    the stop token when generation stopped on one) and the response text. ``context_full``: the
    sequence had no room for this turn, so nothing was generated and the trajectory ends."""

    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    context_full: bool = False


class Responder(Protocol):
    """Produces one response per live environment, in the order given."""

    def respond(
        self, prompts: Sequence[str], contexts: Sequence[TurnContext]
    ) -> list[Response]: ...


Actor = Callable[[list[str], list[TurnContext]], list[str]]
"""A function from the turn's prompts and contexts to response texts (one per prompt)."""


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str, max_prompt_tokens: int | None
) -> list[int]:
    """Token ids of ``prompt``, keeping the LAST ``max_prompt_tokens`` (left truncation: the
    current observation, the admissible actions and the answer format sit at the end of the
    prompt, the task and the oldest history at the start; a BOS token or a system prompt is cut
    with the rest).

    A tokenizer with a chat template (an instruct model) gets ``prompt`` as the user message of
    a one-turn chat followed by the generation prompt (the assistant header), as in verl-agent;
    otherwise the plain text is tokenized with the tokenizer's defaults.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        encoded = tokenizer(prompt)["input_ids"]
    return _keep_last([int(token) for token in encoded], max_prompt_tokens)


def _keep_last(ids: list[int], count: int | None) -> list[int]:
    return ids if count is None or len(ids) <= count else ids[-count:]


_MARK = "\x00AEM\x00"


def encode_continuation(
    tokenizer: PreTrainedTokenizerBase, text: str, max_prompt_tokens: int | None
) -> list[int]:
    """Token ids that continue a trajectory's sequence with ``text`` (trajectory layout),
    keeping the last ``max_prompt_tokens``.

    With a chat template: whatever the template puts between the end of an assistant message
    and the content of the next user message, ``text``, then the user message's end and the
    next assistant header (``<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant
    \n`` for ChatML). Without one: a newline then ``text``.
    """
    if getattr(tokenizer, "chat_template", None):
        before = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _MARK}]
        after = [*before, {"role": "user", "content": _MARK}]
        rendered = tokenizer.apply_chat_template(after, tokenize=False, add_generation_prompt=True)
        _, separator, suffix = rendered.split(_MARK)
        encoded = tokenizer(separator + text + suffix, add_special_tokens=False)["input_ids"]
    else:
        encoded = tokenizer("\n" + text, add_special_tokens=False)["input_ids"]
    return _keep_last([int(token) for token in encoded], max_prompt_tokens)


def encode_turn(
    tokenizer: PreTrainedTokenizerBase, text: str, context: TurnContext, max_prompt_tokens: int
) -> list[int]:
    """:func:`encode_prompt` (left-truncated to ``max_prompt_tokens``), or when
    ``context.continues`` :func:`encode_continuation` whole: cutting a continuation would drop
    its observation, and the sequence's own budget (``max_sequence_tokens``) bounds it."""
    if context.continues:
        return encode_continuation(tokenizer, text, None)
    return encode_prompt(tokenizer, text, max_prompt_tokens)


@dataclass
class ModelResponder:
    """Samples responses from ``model``, all live environments in one batched call per turn.
    Put the ``</action>`` token id in ``sampling.stop_token_ids`` (or ``"</action>"`` in
    ``sampling.stop_strings`` when the tokenizer splits it) to end a response at its action.

    Turns that start a sequence (``TurnContext.continues`` False) open a new
    :class:`~aem.policy.session.DecodingSession` (their prompts go through
    :func:`encode_prompt`); turns that continue one (trajectory layout) extend the open session
    by :func:`encode_continuation` tokens, on the cached context. A continuing turn whose
    context + continuation + ``sampling.max_new_tokens`` would exceed ``max_sequence_tokens``
    (default and upper bound: the model's ``max_position_embeddings``; at least
    ``max_prompt_tokens + sampling.max_new_tokens``, so a first turn always fits) gets
    ``Response.context_full``.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    sampling: SamplingConfig
    generator: torch.Generator
    max_prompt_tokens: int
    max_sequence_tokens: int | None = None
    _session: DecodingSession | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        require_int_at_least("max_prompt_tokens", self.max_prompt_tokens, 1)
        if self.max_sequence_tokens is not None:
            first_turn = self.max_prompt_tokens + self.sampling.max_new_tokens
            require_int_at_least("max_sequence_tokens", self.max_sequence_tokens, first_turn)

    def _sequence_limit(self) -> float:
        limits = [
            self.max_sequence_tokens,
            getattr(self.model.config, "max_position_embeddings", None),
        ]
        return min((limit for limit in limits if limit is not None), default=float("inf"))

    def respond(self, prompts: Sequence[str], contexts: Sequence[TurnContext]) -> list[Response]:
        kinds = {context.continues for context in contexts}
        if len(kinds) > 1:
            raise ValueError("contexts must all continue their sequences or all start new ones")
        continues = kinds == {True}
        if continues and self._session is None:
            raise ValueError("a continuing turn needs an open session: start with turn 0")
        if not continues:
            self._session = DecodingSession(
                self.model, self.tokenizer, self.sampling, self.generator
            )
        session = self._session
        assert session is not None
        prompt_ids = [
            encode_turn(self.tokenizer, p, c, self.max_prompt_tokens)
            for p, c in zip(prompts, contexts, strict=True)
        ]
        limit = self._sequence_limit()
        budget = self.sampling.max_new_tokens
        fits = [
            not continues or session.length(c.env_index) + len(ids) + budget <= limit
            for c, ids in zip(contexts, prompt_ids, strict=True)
        ]
        responses = [Response(ids, [], "", context_full=True) for ids in prompt_ids]
        live = [k for k, fit in enumerate(fits) if fit]
        if live:
            rows = [contexts[k].env_index for k in live]
            out = session.step(rows, [prompt_ids[k] for k in live])
            for row, k in enumerate(live):
                tokens = out.response_ids[row][out.response_mask[row].bool()].tolist()
                responses[k] = Response(prompt_ids[k], tokens, out.texts[row])
        return responses


@dataclass
class FunctionResponder:
    """Responses from a plain function ``actor(prompts, contexts) -> texts``.

    With a ``tokenizer`` the prompt (:func:`encode_turn`, left-truncated to
    ``max_prompt_tokens``) and the response text (without special tokens added) are tokenized
    so the batch can be scored; without one the token lists are empty.
    """

    actor: Actor
    tokenizer: PreTrainedTokenizerBase | None = None
    max_prompt_tokens: int | None = None

    def respond(self, prompts: Sequence[str], contexts: Sequence[TurnContext]) -> list[Response]:
        texts = self.actor(list(prompts), list(contexts))
        if len(texts) != len(prompts):
            raise ValueError(f"actor must return {len(prompts)} texts, got {len(texts)}")
        responses = []
        for prompt, context, text in zip(prompts, contexts, texts, strict=True):
            if not isinstance(text, str):
                raise ValueError(f"actor must return strings, got {type(text).__name__}")
            if self.tokenizer is None:
                responses.append(Response([], [], text))
                continue
            prompt_ids = encode_turn(self.tokenizer, prompt, context, self.max_prompt_tokens)
            response_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            responses.append(Response(prompt_ids, [int(t) for t in response_ids], text))
        return responses


# --------------------------------------------------------------------------- the loop


@dataclass
class _Trajectory:
    """Mutable per-environment state while the rollout runs."""

    group_id: int
    seed: int
    observation: str
    info: dict[str, Any]
    task: str
    task_type: str
    history: list[tuple[str, str]] = field(default_factory=list)
    episode_return: float = 0.0
    won: bool = False
    invalid_turns: int = 0
    error: str | None = None
    context_full: bool = False
    done: bool = False


@dataclass
class _Row:
    traj_id: int
    turn: int
    prompt_ids: list[int]
    response_ids: list[int]
    prompt_text: str
    response_text: str
    observation: str
    env_reward: float
    reward: float
    valid: bool


def rollout(
    responder: Responder,
    pool: EnvPool,
    env_name: str,
    task_seeds: Sequence[int],
    group_size: int,
    max_turns: int,
    prompt: PromptConfig,
    invalid_penalty: float = INVALID_ACTION_PENALTY,
    reset_options: dict[str, Any] | None = None,
    layout: str = "turn",
) -> SpanBatch:
    """Play ``len(task_seeds) * group_size`` trajectories and return their turns as one
    :class:`~aem.batch.SpanBatch` (fields: :data:`aem.batch.ROLLOUT_FIELDS`), its rows padded
    with the responder's tokenizer's pad id.

    Environment ``i`` of ``pool`` (which must hold exactly that many) plays task
    ``task_seeds[i // group_size]`` (same seed, same task). Each turn every live environment's
    prompt is built (``env_name`` picks the wording; ``layout`` whether later turns get a whole
    prompt or a continuation, see the module docstring), the responder answers all of them at
    once, the responses are parsed (:func:`aem.agent.parse_response`) and the actions stepped
    in the pool. A trajectory ends when its environment terminates or truncates, after
    ``max_turns`` turns, when its environment raises (span field ``error``; that last turn
    is judged on its response's form only, since the engine gave no verdict), or when the
    responder had no room left in its sequence (``context_full``; that turn is not played).
    A trajectory whose first turn did not fit (a responder with no room at all) has no span.
    Deterministic given the responder's generator and the seeds.
    """
    _check_rollout_args(pool, task_seeds, group_size, max_turns, invalid_penalty)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    continues = layout == "trajectory"
    seeds = [int(task_seeds[i // group_size]) for i in range(pool.num_envs)]
    starts = pool.reset(seeds, [reset_options] * pool.num_envs)
    trajs = [
        _Trajectory(
            group_id=i // group_size,
            seed=seeds[i],
            observation=obs,
            info=info,
            task=str(info.get("task", "")),
            task_type=str(info.get("task_type", "")),
        )
        for i, (obs, info) in enumerate(starts)
    ]
    rows: list[_Row] = []
    for turn in range(max_turns):
        live = [i for i, traj in enumerate(trajs) if not traj.done]
        if not live:
            break
        follow = continues and turn > 0
        prompts = [_prompt_of(env_name, trajs[i], prompt, follow) for i in live]
        contexts = [_context_of(i, trajs[i], turn, reset_options, follow) for i in live]
        responses = responder.respond(prompts, contexts)
        if len(responses) != len(live):
            raise ValueError(f"responder must return {len(live)} responses, got {len(responses)}")
        for i, response in zip(live, responses, strict=True):
            if response.context_full:
                trajs[i].context_full = trajs[i].done = True
        parsed = [parse_response(r.text) for r in responses]
        actions: list[str | None] = [None] * pool.num_envs
        for i, p, r in zip(live, parsed, responses, strict=True):
            actions[i] = None if r.context_full else p.action
        results = pool.step(actions)
        for k, i in enumerate(live):
            if responses[k].context_full:
                continue
            result = results[i]
            if result is None:
                raise RuntimeError(f"pool returned no step result for live environment {i}")
            obs, env_reward, terminated, truncated, info = result
            traj = trajs[i]
            error = info.get("error")
            engine_valid = True if error is not None else bool(info.get("valid", True))
            reward, valid = agent_turn_reward(
                float(env_reward), parsed[k], engine_valid, invalid_penalty
            )
            rows.append(
                _Row(
                    traj_id=i,
                    turn=turn,
                    prompt_ids=responses[k].prompt_ids,
                    response_ids=responses[k].response_ids,
                    prompt_text=prompts[k],
                    response_text=responses[k].text,
                    observation=traj.observation,
                    env_reward=float(env_reward),
                    reward=reward,
                    valid=valid,
                )
            )
            traj.history.append((traj.observation, parsed[k].action))
            traj.observation, traj.info = obs, info
            traj.episode_return += float(env_reward)
            traj.won = bool(info.get("won", False))
            traj.invalid_turns += int(not valid)
            traj.error = None if error is None else str(error)
            traj.done = bool(terminated or truncated) or error is not None
    return _assemble(rows, trajs, layout, _pad_id(responder))


def _check_rollout_args(
    pool: EnvPool,
    task_seeds: Sequence[int],
    group_size: int,
    max_turns: int,
    invalid_penalty: float,
) -> None:
    if len(task_seeds) == 0:
        raise ValueError("task_seeds must not be empty")
    require_int_at_least("group_size", group_size, 1)
    require_int_at_least("max_turns", max_turns, 1)
    if pool.num_envs != len(task_seeds) * group_size:
        raise ValueError(
            f"pool must hold len(task_seeds) * group_size = {len(task_seeds) * group_size} "
            f"environments, got num_envs={pool.num_envs}"
        )
    if not invalid_penalty >= 0.0:
        raise ValueError(f"invalid_penalty must be >= 0, got {invalid_penalty!r}")


def _prompt_of(env_name: str, traj: _Trajectory, config: PromptConfig, follow: bool) -> str:
    admissible = traj.info.get("admissible_commands", [])
    if follow:
        return build_followup(env_name, traj.observation, len(traj.history), admissible, config)
    return build_prompt(env_name, traj.task, traj.observation, traj.history, admissible, config)


def _context_of(
    index: int,
    traj: _Trajectory,
    turn: int,
    reset_options: dict[str, Any] | None,
    continues: bool,
) -> TurnContext:
    return TurnContext(
        env_index=index,
        group_id=traj.group_id,
        seed=traj.seed,
        turn=turn,
        task=traj.task,
        observation=traj.observation,
        info=traj.info,
        history=tuple(traj.history),
        reset_options=reset_options,
        continues=continues,
    )


def _pad_id(responder: Responder) -> int:
    """The pad id of the responder's tokenizer (0 without one: its token lists are empty)."""
    pad_id = getattr(getattr(responder, "tokenizer", None), "pad_token_id", None)
    return 0 if pad_id is None else int(pad_id)


def _assemble(rows: list[_Row], trajs: list[_Trajectory], layout: str, pad_id: int) -> SpanBatch:
    rows = sorted(rows, key=lambda row: (row.traj_id, row.turn))
    anchors: dict[tuple[int, str], int] = {}
    anchor_ids = [
        anchors.setdefault((trajs[r.traj_id].group_id, r.observation), len(anchors)) for r in rows
    ]
    of_traj = [trajs[r.traj_id] for r in rows]

    def long(values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long)

    return SpanBatch.from_turns(
        [r.prompt_ids for r in rows],
        [r.response_ids for r in rows],
        [r.traj_id for r in rows],
        layout,
        pad_id,
        spans={
            "group": long([t.group_id for t in of_traj]),
            "traj": long([r.traj_id for r in rows]),
            "turn": long([r.turn for r in rows]),
            "anchor": long(anchor_ids),
            "reward": torch.tensor([r.reward for r in rows], dtype=torch.float32),
            "env_reward": torch.tensor([r.env_reward for r in rows], dtype=torch.float32),
            "valid": torch.tensor([r.valid for r in rows], dtype=torch.bool),
            "episode_return": torch.tensor(
                [t.episode_return for t in of_traj], dtype=torch.float64
            ),
            "won": torch.tensor([t.won for t in of_traj], dtype=torch.bool),
            "context_full": torch.tensor([t.context_full for t in of_traj], dtype=torch.bool),
            "seed": long([t.seed for t in of_traj]),
            "task_type": [t.task_type for t in of_traj],
            "error": [t.error for t in of_traj],
            "prompt_text": [r.prompt_text for r in rows],
            "response_text": [r.response_text for r in rows],
        },
    )
