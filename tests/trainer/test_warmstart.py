"""Warm start: noisy-expert data, tokenisation with eos, and behaviour cloning of a tiny model."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from aem.agent import PromptConfig, parse_response
from aem.envs.household.search_expert import search_action
from aem.envs.pool import EnvPool
from aem.policy.runner import PolicyRunner
from aem.policy.sampling import SamplingConfig, generate
from aem.policy.tiny import build_tiny_model
from aem.policy.tokenizer import AgentTokenIds, build_tokenizer
from aem.rollout import FunctionResponder, encode_prompt, rollout
from aem.trainer.warmstart import (
    NoisyExpert,
    budget_overrun,
    corpus_texts,
    expert_dataset,
    expert_trajectories,
    finetune_examples,
    format_response,
    sft_lr_factor,
    supervised_finetune,
    tokenize_pairs,
)

COMPACT = PromptConfig(style="compact", history_length=1)
MAX_PROMPT = 128


def well_formed_rate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    sampling: SamplingConfig,
    seed: int,
    max_prompt_tokens: int,
) -> float:
    """Fraction of ``prompts`` whose sampled response :func:`aem.agent.parse_response` accepts."""
    if len(prompts) == 0:
        raise ValueError("prompts must not be empty")
    ids = [encode_prompt(tokenizer, p, max_prompt_tokens) for p in prompts]
    out = generate(model, tokenizer, ids, sampling, torch.Generator().manual_seed(seed))
    return sum(parse_response(text).well_formed for text in out.texts) / len(prompts)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer(corpus_texts("household", 16, seed=0, prompt=COMPACT), 768)


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    return expert_dataset("household", 24, noise=0.3, seed=1, prompt=COMPACT, max_turns=25)


def fresh_model(tokenizer: Any) -> Any:
    return build_tiny_model(
        tokenizer, hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate=128, seed=0
    )


def actions_and_admissible(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(label action, admissible actions listed in the compact prompt) per pair."""
    out = []
    for prompt, response in pairs:
        parsed = parse_response(response)
        assert parsed.well_formed and response == format_response(parsed.action)
        line = next(x for x in prompt.splitlines() if x.startswith("Actions: "))
        out.append((parsed.action, line.removeprefix("Actions: ").split(" | ")))
    return out


def test_format_response_is_what_the_parser_accepts() -> None:
    parsed = parse_response(format_response("go to fridge 1"))
    assert parsed.well_formed and parsed.action == "go to fridge 1"


def test_expert_dataset_labels_are_the_taken_actions() -> None:
    clean = expert_dataset("household", 6, noise=0.0, seed=2, prompt=COMPACT, max_turns=40)
    noisy = expert_dataset("household", 6, noise=1.0, seed=2, prompt=COMPACT, max_turns=40)
    assert clean == expert_dataset("household", 6, noise=0.0, seed=2, prompt=COMPACT, max_turns=40)
    assert clean != expert_dataset("household", 6, noise=0.0, seed=3, prompt=COMPACT, max_turns=40)
    # one episode starts wherever the prompt shows no earlier action
    assert sum("Act " not in prompt for prompt, _ in clean) == 6
    # all-random play is admissible but never solves a task in 40 turns, unlike the expert
    for action, admissible in actions_and_admissible(noisy):
        assert action in admissible
    assert len(noisy) == 6 * 40 > len(clean)
    # each label's next prompt shows it as the previous action (history window of 1)
    for (_, response), (next_prompt, _) in itertools.pairwise(clean):
        if "Act " in next_prompt:
            assert f": {parse_response(response).action}\n" in next_prompt


def test_noise_fraction_of_labels_differs_from_expert() -> None:
    """With noise p a turn's label is a uniform admissible action with probability p: replay each
    state in a reference expert and compare the disagreements with their expected count
    sum p (1 - [expert action admissible] / #admissible), within 4 standard deviations."""
    noise = 0.5
    reference = NoisyExpert("household", noise=0.0, seed=0)
    noisy = NoisyExpert("household", noise=noise, seed=4)
    disagree, expected, variance, total = 0, 0.0, 0.0, 0

    def actor(prompts: list[str], contexts: list[Any]) -> list[str]:
        nonlocal disagree, expected, variance, total
        labels = noisy(prompts, contexts)
        for context, label in zip(contexts, labels, strict=True):
            expert = reference.action(context)
            admissible = context.info["admissible_commands"]
            p = noise * (1 - (expert in admissible) / len(admissible))
            disagree += format_response(expert) != label
            expected, variance, total = expected + p, variance + p * (1 - p), total + 1
        return labels

    with EnvPool("household", 16) as pool:
        rollout(FunctionResponder(actor), pool, "household", list(range(16)), 1, 20, COMPACT)
    assert total > 100
    assert abs(disagree - expected) < 4 * math.sqrt(variance)


@pytest.mark.parametrize("history_length", [0, 1, 3])
def test_household_labels_use_only_what_the_prompt_shows(history_length: int) -> None:
    """Noise-free household labels are the observation-only expert's action on the turn's task,
    observation, admissible commands and the prompt's history window, nothing else."""
    prompt = PromptConfig(style="compact", history_length=history_length)
    expert = NoisyExpert("household", noise=0.0, seed=0, history_length=history_length)
    checked = 0

    def actor(prompts: list[str], contexts: list[Any]) -> list[str]:
        nonlocal checked
        labels = expert(prompts, contexts)
        for text, context, label in zip(prompts, contexts, labels, strict=True):
            window = context.history[len(context.history) - history_length :]
            for observation, action in window:
                assert f": {action}\n" in text and observation.splitlines()[-1] in text
            admissible = context.info["admissible_commands"]
            expected = search_action(context.task, context.observation, admissible, window)
            assert label == format_response(expected)
            checked += 1
        return labels

    with EnvPool("household", 8) as pool:
        batch = rollout(FunctionResponder(actor), pool, "household", list(range(8)), 1, 30, prompt)
    assert checked > 40
    assert sum(t.won for t in batch.trajectories()) >= 6


def test_corpus_texts_hold_prompts_and_responses() -> None:
    texts = corpus_texts("webshop", 3, seed=0)
    assert texts and all(text.startswith("Task: ") for text in texts)
    assert all(text.endswith("</action>") and "<think></think><action>" in text for text in texts)


def test_tokenize_pairs_truncates_prompts_left_and_appends_eos(tokenizer: Any) -> None:
    sample = [("Task: x\n" * 100, format_response("look")), ("Task: y\n", format_response("a"))]
    prompts, responses = tokenize_pairs(tokenizer, sample, max_prompt_tokens=16)
    assert prompts[0] == tokenizer(sample[0][0])["input_ids"][-16:]
    assert prompts[1] == tokenizer(sample[1][0])["input_ids"]
    for (_, response), ids in zip(sample, responses, strict=True):
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[:-1]) == response


def test_first_loss_matches_a_per_row_reference(tokenizer: Any, pairs: Any) -> None:
    """Step 0's loss is the token-mean response NLL of the first batch, computed here row by row
    without padding with the model's own full logits."""
    model = fresh_model(tokenizer)
    rows = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(7))[:4].tolist()
    prompts, responses = tokenize_pairs(tokenizer, [pairs[r] for r in rows], MAX_PROMPT)
    nll, count = 0.0, 0
    with torch.no_grad():
        for prompt, response in zip(prompts, responses, strict=True):
            ids = torch.tensor([prompt + response])
            logits = model(input_ids=ids).logits[0].double()
            log_probs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
            nll -= float(log_probs.gather(1, torch.tensor(response)[:, None]).sum())
            count += len(response)
    losses = supervised_finetune(PolicyRunner(model), tokenizer, pairs, 1, 4, 1e-3, 7, MAX_PROMPT)
    assert losses[0] == pytest.approx(nll / count, rel=1e-4)
    assert abs(losses[0] - math.log(len(tokenizer))) < 1.0  # near-uniform at initialisation
    assert not model.training  # eval mode restored


def test_sft_lowers_the_loss_and_teaches_the_format(tokenizer: Any, pairs: Any) -> None:
    model = fresh_model(tokenizer)
    stop = AgentTokenIds.of(tokenizer).action_close
    greedy = SamplingConfig(max_new_tokens=20, temperature=0.0, stop_token_ids=(stop,))
    held_out = [p for p, _ in expert_dataset("household", 4, 0.3, 99, COMPACT, 25)][:24]
    before = well_formed_rate(model, tokenizer, held_out, greedy, 0, MAX_PROMPT)
    losses = supervised_finetune(PolicyRunner(model), tokenizer, pairs, 30, 16, 3e-3, 0, MAX_PROMPT)
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    after = well_formed_rate(model, tokenizer, held_out, greedy, 0, MAX_PROMPT)
    assert before <= 0.1
    assert after >= 0.8


def test_sft_is_reproducible_and_checks_arguments(tokenizer: Any, pairs: Any) -> None:
    runs = [
        supervised_finetune(
            PolicyRunner(fresh_model(tokenizer)), tokenizer, pairs, 3, 4, 1e-3, 5, 64
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    model = fresh_model(tokenizer)
    with pytest.raises(ValueError, match="steps"):
        supervised_finetune(PolicyRunner(model), tokenizer, pairs, 0, 4, 1e-3, 0)
    with pytest.raises(ValueError, match="lr"):
        supervised_finetune(PolicyRunner(model), tokenizer, pairs, 1, 4, 0.0, 0)
    with pytest.raises(ValueError, match="pairs"):
        supervised_finetune(PolicyRunner(model), tokenizer, [], 1, 4, 1e-3, 0)
    with pytest.raises(ValueError, match="noise"):
        NoisyExpert("household", noise=1.5)
    with pytest.raises(ValueError, match="env name must be one of"):
        NoisyExpert("nowhere")


def test_expert_labels_are_the_noise_free_expert_in_the_states_noise_reached() -> None:
    """labels="expert": same states as labels="taken" (same seed), but every label is what the
    observation-only expert would do given the prompt's task, observation, actions and window."""
    taken = expert_dataset("household", 4, noise=0.5, seed=5, prompt=COMPACT, max_turns=15)
    relabelled = expert_dataset(
        "household", 4, noise=0.5, seed=5, prompt=COMPACT, max_turns=15, labels="expert"
    )
    assert [p for p, _ in taken] == [p for p, _ in relabelled]
    differ = 0
    for (prompt, label), (_, played) in zip(relabelled, taken, strict=True):
        lines = prompt.splitlines()
        task = lines[0].removeprefix("Task: ")
        observation_line = next(
            i
            for i, x in enumerate(lines)
            if x.startswith("Obs ") and not any(y.startswith("Act ") for y in lines[i + 1 :])
        )
        observation = "\n".join(lines[observation_line:-1]).split(": ", 1)[1]
        admissible = lines[-1].removeprefix("Actions: ").split(" | ")
        history = []
        if "Act " in prompt:
            act_line = next(x for x in lines if x.startswith("Act "))
            obs_prev = "\n".join(lines[1 : lines.index(act_line)]).split(": ", 1)[1]
            history = [(obs_prev, act_line.split(": ", 1)[1])]
        assert parse_response(label).action == search_action(task, observation, admissible, history)
        differ += label != played
    assert differ > 0  # the noise changed some played actions, never the labels


def test_expert_labels_need_an_observation_expert() -> None:
    with pytest.raises(ValueError, match="labels must be"):
        expert_dataset("household", 1, noise=0.0, seed=0, prompt=COMPACT, max_turns=2, labels="x")
    with pytest.raises(ValueError, match="expert labels need an observation expert"):
        expert_dataset("webshop", 1, 0.0, 0, COMPACT, max_turns=2, labels="expert")


def test_sft_lr_factor_warms_up_then_decays_to_the_floor() -> None:
    steps = 200
    factors = [sft_lr_factor(step, steps) for step in range(steps)]
    warm = 10  # 5% of 200
    assert factors[:warm] == pytest.approx([(k + 1) / warm for k in range(warm)])
    assert factors[warm] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[warm:]))
    assert factors[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 189 / 190)))
    assert sft_lr_factor(steps, steps) == pytest.approx(0.1)


# --------------------------------------------------------------------------- trajectory layout


def expert_episodes(tokenizer: Any, **kw: Any) -> list[list[Any]]:
    args = dict(noise=0.3, seed=4, prompt=COMPACT, max_turns=12, labels="expert")
    return expert_trajectories(
        "household", 6, **{**args, **kw}, tokenizer=tokenizer, max_prompt_tokens=MAX_PROMPT
    )


def test_expert_trajectories_train_the_turns_that_played_the_label(tokenizer: Any) -> None:
    """Same play as expert_dataset with the same seed: the labels of the trained turns are the
    expert's labels of those states, and every untrained turn played something else."""
    episodes = expert_episodes(tokenizer, invalid_noise=0.2)
    pairs = expert_dataset("household", 6, 0.3, 4, COMPACT, 12, labels="expert", invalid_noise=0.2)
    turns = [turn for episode in episodes for turn in episode]
    assert len(turns) == len(pairs)  # one turn per state, as in the turn layout
    untrained = 0
    for (_, response_ids, trained), (_, label) in zip(turns, pairs, strict=True):
        played = tokenizer.decode(response_ids)
        assert trained == (played == label)
        untrained += not trained
    assert 0 < untrained < len(turns)
    for episode in episodes:
        assert len(episode[0][0]) == MAX_PROMPT  # the first prompt, left-truncated
        assert all(tokenizer.decode(t[0]).startswith("\nObs ") for t in episode[1:])
    capped = expert_episodes(tokenizer, invalid_noise=0.2, max_sequence_tokens=600)
    for episode in capped:
        assert sum(len(p) + len(r) for p, r, _ in episode) <= 600
    assert sum(map(len, capped)) < len(turns)


def test_trajectory_example_loss_matches_a_per_sequence_reference(tokenizer: Any) -> None:
    """Step 0's loss is the token-mean NLL of the trained spans, computed here one unpadded
    sequence at a time with the model's own logits."""
    episodes = expert_episodes(tokenizer)
    model = fresh_model(tokenizer)
    rows = torch.randperm(len(episodes), generator=torch.Generator().manual_seed(3))[:3].tolist()
    nll, count = 0.0, 0
    with torch.no_grad():
        for episode in (episodes[r] for r in rows):
            sequence = [t for p, r, _ in episode for t in p + r]
            log_probs = torch.log_softmax(model(input_ids=torch.tensor([sequence])).logits[0], -1)
            start = 0
            for prompt, response, trained in episode:
                start += len(prompt)
                for k, token in enumerate(response):
                    if trained:
                        nll -= float(log_probs[start + k - 1, token])
                        count += 1
                start += len(response)
    losses = finetune_examples(PolicyRunner(model), episodes, tokenizer.pad_token_id, 1, 3, 1e-3, 3)
    assert losses[0] == pytest.approx(nll / count, rel=1e-4)


def test_budget_overrun_names_the_key_the_count_and_the_longest() -> None:
    assert budget_overrun([3, 8, 5], 8, "rollout.max_response_tokens") is None
    message = budget_overrun([3, 9, 12, 5], 8, "rollout.max_response_tokens")
    assert message is not None
    assert "2 of 4 expert responses" in message and "longest 12" in message
    assert "rollout.max_response_tokens=8" in message
