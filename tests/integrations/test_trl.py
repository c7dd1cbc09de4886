"""AEM inside TRL's GRPOTrainer: same advantages as aem.modulate_advantages by hand, a short CPU
training run, and an exact no-op when disabled.

Completions come from a seeded ``rollout_func`` (TRL's hook for custom multi-turn rollouts): each
is model tokens, then environment tokens (``env_mask`` 0, TRL's tool mask), then model tokens, of
random lengths, so padding and tool masking are both exercised and two trainers see the same batch.
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

pytest.importorskip(
    "trl",
    reason="TRL is an optional extra of aem: pip install 'trl>=1.16,<1.17' to run these tests",
)

from datasets import Dataset
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM
from trl import GRPOConfig, GRPOTrainer

import aem
from aem.algorithms import (
    AdvantageConfig,
    AdvantageInputs,
    aggregate_loss,
    compute_advantages,
    empg_modulate,
    kl_penalty,
    spans_from_mask,
)
from aem.algorithms.kl import importance_corrected_kl
from aem.integrations.trl import AEMGRPOTrainer, modulate_completion_advantages
from aem.policy import build_tiny_model, build_tokenizer

NUM_GENERATIONS = 3
BATCH = 6  # two prompts x three completions per process
SAMPLING_TEMPERATURE = 0.7
PROMPTS = ["count the apples", "go north then east", "the cat sat", "open the fridge"]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    corpus = [*PROMPTS, "take the mug", "you see a knife and a mug", "nothing happens"] * 4
    return build_tokenizer(corpus, vocab_size=300)


def tiny_policy(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """A 1-layer Qwen2 whose output embedding is scaled up so token entropies differ widely."""
    model = build_tiny_model(
        tokenizer, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate=64, seed=0
    )
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(4.0)
    return model


def multi_turn_rollout(tokenizer: PreTrainedTokenizerFast, seed: int = 0):
    """Seeded fake agent rollouts: model turn, environment tokens (env_mask 0), model turn."""
    vocab = len(tokenizer)

    def rollout(prompts: list[str], trainer: GRPOTrainer) -> dict[str, list]:
        generator = torch.Generator().manual_seed(seed)
        completion_ids, env_mask = [], []
        for _ in prompts:
            first, env, second = (
                int(torch.randint(low, high, (), generator=generator))
                for low, high in ((1, 6), (0, 4), (0, 5))
            )
            length = first + env + second
            completion_ids.append(torch.randint(2, vocab, (length,), generator=generator).tolist())
            env_mask.append([1] * first + [0] * env + [1] * second)
        prompt_ids = [tokenizer(prompt)["input_ids"] for prompt in prompts]
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": None,
            "env_mask": env_mask,
        }

    return rollout


def token_id_reward(completion_ids: list[list[int]], **kwargs: object) -> list[float]:
    """Toy reward: how many completion token ids are multiples of 3."""
    return [float(sum(token % 3 == 0 for token in ids)) for ids in completion_ids]


def grpo_config(tmp_path, **overrides: object) -> GRPOConfig:
    settings = {
        "output_dir": str(tmp_path / "grpo"),
        "per_device_train_batch_size": BATCH,
        "num_generations": NUM_GENERATIONS,
        "max_completion_length": 12,
        "temperature": SAMPLING_TEMPERATURE,
        "learning_rate": 1e-2,
        "max_steps": 2,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,  # TRL defaults to bf16 autocast; fp32 keeps the float64 reference tight
        "disable_tqdm": True,
        "seed": 0,
    }
    settings.update(overrides)
    return GRPOConfig(**settings)


def make_trainer(
    trainer_class: type[GRPOTrainer],
    tokenizer: PreTrainedTokenizerFast,
    tmp_path,
    *,
    rollout: bool = True,
    config: dict | None = None,
    reward: object = None,
    **aem_options: object,
) -> GRPOTrainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' checkpointing renames
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'")  # experimental
        return trainer_class(
            model=tiny_policy(tokenizer),
            reward_funcs=reward or token_id_reward,
            args=grpo_config(tmp_path, **(config or {})),
            train_dataset=Dataset.from_dict({"prompt": PROMPTS}),
            processing_class=tokenizer,
            rollout_func=multi_turn_rollout(tokenizer) if rollout else None,
            **aem_options,
        )


def score_batch(trainer: GRPOTrainer) -> dict:
    """TRL's generate-and-score step on two prompts x NUM_GENERATIONS completions, train mode."""
    trainer.model.train()
    inputs = [{"prompt": prompt} for prompt in PROMPTS[:2] for _ in range(NUM_GENERATIONS)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return trainer._generate_and_score_completions(inputs)


def loss_mask(batch: dict) -> torch.Tensor:
    return (batch["completion_mask"] * batch["tool_mask"]).bool()


def groups(size: int, num_generations: int = NUM_GENERATIONS) -> torch.Tensor:
    return torch.arange(size) // num_generations


def per_turn(
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    row_groups: torch.Tensor,
    **options: object,
) -> tuple[torch.Tensor, dict]:
    """The core on the same tensors, one span per run of each row's mask (one per turn)."""
    spans = spans_from_mask(mask)
    return aem.modulate_advantages(
        advantages, entropy, mask, row_groups[spans.span_row], span_index=spans.span_index,
        **options,
    )  # fmt: skip


def reference_token_entropy(model: Qwen2ForCausalLM, batch: dict) -> torch.Tensor:
    """Float64 entropy of the temperature-scaled next-token distribution at each completion
    position, from the model's ordinary (unfused) forward."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    prompt_length, completion_length = (
        batch["prompt_ids"].shape[1],
        batch["completion_ids"].shape[1],
    )
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits.double()
    positions = logits[:, prompt_length - 1 : prompt_length - 1 + completion_length]
    log_p = torch.log_softmax(positions / SAMPLING_TEMPERATURE, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def trl_token_entropy(trainer: GRPOTrainer, batch: dict) -> torch.Tensor:
    """TRL's own no-grad entropy of the batch's completion tokens (its fused scoring pass)."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        _, entropy, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, ids, attention, batch["completion_ids"].shape[1],
            batch_size=BATCH, compute_entropy=True,
        )  # fmt: skip
    return entropy


class PolicyPassCounter:
    """Counts TRL's no-grad scoring passes over the policy (patched on GRPOTrainer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = GRPOTrainer._get_per_token_logps_and_entropies

        def counted(trainer, model, *args, **kwargs):
            if model is trainer.model and not torch.is_grad_enabled():
                self.calls += 1
            return original(trainer, model, *args, **kwargs)

        monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", counted)


# ---------------------------------------------------------------- (1) equality with the core call


@pytest.mark.parametrize("num_iterations", [1, 2], ids=["extra-forward", "reuse-old-pass"])
def test_advantages_equal_modulate_advantages_by_hand(
    tokenizer, tmp_path, monkeypatch, num_iterations
):
    config = {"num_iterations": num_iterations}
    base = score_batch(
        make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, config=config, aem_enabled=False)
    )
    counter = PolicyPassCounter(monkeypatch)
    trainer = make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, config=config, aem_temperature=1.5)
    batch = score_batch(trainer)

    # One no-grad policy pass either way: TRL's old-log-prob pass (reused) or AEM's extra one.
    assert ("old_per_token_logps" in batch) == (num_iterations > 1)
    assert counter.calls == 1
    assert torch.equal(batch["completion_ids"], base["completion_ids"])
    mask = loss_mask(batch)
    assert (~mask & batch["completion_mask"].bool()).any(), "rollout must contain tool tokens"

    advantages = batch["advantages"]
    base_tokens = base["advantages"][:, None].expand_as(advantages)
    # (a) exact: TRL's own entropies of the same batch, aem.modulate_advantages by hand.
    trl_entropy = trl_token_entropy(trainer, batch)
    by_hand, _ = per_turn(base_tokens, trl_entropy, mask, groups(BATCH), temperature=1.5)
    torch.testing.assert_close(advantages, by_hand, rtol=1e-6, atol=1e-7)
    # (b) independent: float64 entropy from the plain forward at the sampling temperature.
    reference, _ = per_turn(
        base_tokens.double(),
        reference_token_entropy(trainer.model, batch),
        mask,
        groups(BATCH),
        temperature=1.5,
    )
    torch.testing.assert_close(advantages.double(), reference, rtol=1e-4, atol=1e-5)

    # AEM really changed some advantages; tokens outside the loss mask keep TRL's value.
    assert not torch.allclose(advantages[mask], base_tokens[mask])
    assert torch.equal(advantages[~mask], base_tokens[~mask])
    # The completions table shows each completion's mean modulated advantage over its tokens.
    token_mean = (reference * mask).sum(dim=1) / mask.sum(dim=1)
    logged = torch.tensor(list(trainer._logs["advantages"]), dtype=torch.float64)
    torch.testing.assert_close(logged, token_mean, rtol=1e-4, atol=1e-5)
    assert set(trainer._metrics["train"]) >= {"aem/weight_std", "aem/entropy_mean"}


def test_tool_output_splits_completions_into_turns(tokenizer, tmp_path):
    """TRL's tool mask (here the rollout's ``env_mask``) has 0 on the environment's tokens, so a
    completion holds several assistant turns: each gets its own weight (``aem_span="turn"``, the
    default); ``aem_span="row"`` gives the completion one weight."""
    base = score_batch(make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_enabled=False))
    turn_trainer = make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_temperature=2.0)
    turn = score_batch(turn_trainer)
    row = score_batch(
        make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_temperature=2.0, aem_span="row")
    )
    mask = loss_mask(turn)
    spans = spans_from_mask(mask)
    turns_per_completion = spans.span_row.bincount(minlength=BATCH)
    assert (turns_per_completion >= 2).sum() >= 2, "the rollout must make multi-turn completions"

    base_tokens = base["advantages"][:, None].expand_as(turn["advantages"])
    entropy = trl_token_entropy(turn_trainer, turn)
    expected_turn, _ = per_turn(base_tokens, entropy, mask, groups(BATCH), temperature=2.0)
    expected_row, _ = aem.modulate_advantages(
        base_tokens, entropy, mask, groups(BATCH), temperature=2.0
    )
    torch.testing.assert_close(turn["advantages"], expected_turn, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(row["advantages"], expected_row, rtol=1e-6, atol=1e-7)
    # The weight w_s = modulated / A is one number per turn, and two turns of one completion
    # can get different ones; per row it is one number per completion.
    weights = turn["advantages"] / base_tokens
    for span in range(spans.num_spans):
        assert weights[spans.span_index == span].unique().numel() == 1
    multi = (turns_per_completion >= 2).nonzero()[:, 0].tolist()
    assert any(weights[i][mask[i]].unique().numel() > 1 for i in multi)
    row_weights = row["advantages"] / base_tokens
    assert all(row_weights[i][mask[i]].unique().numel() == 1 for i in range(BATCH))
    with pytest.raises(ValueError, match="aem_span"):
        make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_span="episode")


# ---------------------------------------------------------------- (2) a short CPU training run


@pytest.mark.parametrize("num_iterations", [1, 2])
def test_two_step_training_run_logs_aem_metrics(tokenizer, tmp_path, num_iterations):
    trainer = make_trainer(
        AEMGRPOTrainer,
        tokenizer,
        tmp_path,
        rollout=False,  # real sampling from the tiny model
        config={"num_iterations": num_iterations},
        aem_temperature=1.0,
    )
    before = [parameter.detach().clone() for parameter in trainer.model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer.train()

    assert trainer.state.global_step == 2
    step_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(step_logs) == 2
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in step_logs)
    # A new generation batch (with its AEM metrics) is made every num_iterations steps.
    with_aem = [entry for entry in step_logs if "aem/weight_min" in entry]
    assert len(with_aem) == 2 // num_iterations
    for entry in with_aem:
        assert 0.0 < entry["aem/weight_min"] <= 1.0 <= entry["aem/weight_max"]
        assert 0.0 <= entry["aem/degenerate_group_frac"] <= 1.0
    after = list(trainer.model.parameters())
    assert any(not torch.equal(old, new) for old, new in zip(before, after, strict=True))


# ---------------------------------------------------------------- (3) disabled = plain TRL


def test_disabled_leaves_trl_advantages_untouched(tokenizer, tmp_path, monkeypatch):
    plain = score_batch(make_trainer(GRPOTrainer, tokenizer, tmp_path))
    counter = PolicyPassCounter(monkeypatch)
    trainer = make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_enabled=False)
    batch = score_batch(trainer)

    assert batch["advantages"].shape == (BATCH,)
    assert torch.equal(batch["advantages"], plain["advantages"])
    assert batch["advantages"].abs().sum() > 0
    assert counter.calls == 0  # no extra forward
    assert not any(name.startswith("aem/") for name in trainer._metrics["train"])


def test_zero_temperature_keeps_trl_values_token_level(tokenizer, tmp_path):
    plain = score_batch(make_trainer(GRPOTrainer, tokenizer, tmp_path))
    batch = score_batch(make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_temperature=0.0))
    assert batch["advantages"].shape == batch["completion_ids"].shape
    assert torch.equal(
        batch["advantages"], plain["advantages"][:, None].expand_as(batch["advantages"])
    )


def test_constructor_rejects_bad_aem_options(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="aem_temperature"):
        make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_temperature=-1.0)
    with pytest.raises(ValueError, match="aem_enabled"):
        make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_enabled=1)
    with pytest.raises(ValueError, match="aem_modulation must be one of"):
        make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_modulation="none")
    with pytest.raises(ValueError, match="aem_empg_zeta"):
        make_trainer(AEMGRPOTrainer, tokenizer, tmp_path, aem_empg_zeta=-0.1)


# ---------------------------------------------------------------- the gather-aware core


def random_completions(seed: int, rows: int, length: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    advantages = torch.randn(rows, generator=generator)
    entropy = torch.rand(rows, length, generator=generator) * 3.0
    mask = torch.rand(rows, length, generator=generator) < 0.7
    mask[:, 0] = True  # every completion starts with a model token
    return advantages, entropy, mask


def multi_turn_completions(seed: int, rows: int) -> tuple[torch.Tensor, ...]:
    """Completions of 1-3 assistant turns with tool output (mask 0) between them, ragged
    lengths, right padding (mask 0) to the longest of the batch."""
    generator = torch.Generator().manual_seed(seed)
    layouts = []
    for _ in range(rows):
        turns = int(torch.randint(1, 4, (), generator=generator))
        layout = []
        for turn in range(turns):
            if turn:
                layout += [0] * int(torch.randint(1, 4, (), generator=generator))
            layout += [1] * int(torch.randint(1, 5, (), generator=generator))
        layouts.append(layout)
    width = max(len(layout) for layout in layouts)
    mask = torch.tensor([layout + [0] * (width - len(layout)) for layout in layouts]).bool()
    entropy = torch.rand(rows, width, generator=generator) * 3.0
    return torch.randn(rows, generator=generator), entropy, mask


@pytest.mark.parametrize("span", ["turn", "row"])
def test_masked_tokens_never_enter_the_weights(span):
    advantages, entropy, mask = random_completions(seed=1, rows=6, length=5)
    mask[4] = False  # a truncated completion TRL masked out: it keeps A, out of the statistics
    counted = mask.any(dim=1)
    poisoned = entropy.masked_fill(~mask, float("nan"))
    result = modulate_completion_advantages(
        advantages, poisoned, mask, num_generations=3, span=span, stat_mask=counted
    )
    tokens, clean = advantages[:, None].expand(6, 5), entropy.masked_fill(~mask, 0.0)
    if span == "turn":
        expected, expected_stats = per_turn(tokens, clean, mask, groups(6))
    else:
        expected, expected_stats = aem.modulate_advantages(tokens, clean, mask, groups(6))
    assert torch.equal(result.token_advantages, expected)
    assert torch.equal(result.token_advantages[4], advantages[4].expand(5))
    assert result.stats.keys() == expected_stats.keys()
    for name, value in expected_stats.items():
        torch.testing.assert_close(result.stats[name], value, equal_nan=True)


def test_turns_of_one_completion_get_their_own_weights():
    """Per turn (default) the turns of a completion get different weights; ``span="row"`` gives
    the completion one weight, as aem.modulate_advantages without span_index."""
    advantages, entropy, mask = multi_turn_completions(seed=4, rows=9)
    row_groups = groups(9)
    tokens = advantages[:, None].expand_as(entropy)
    turn = modulate_completion_advantages(advantages, entropy, mask, num_generations=3)
    expected, _ = per_turn(tokens, entropy, mask, row_groups)
    assert torch.equal(turn.token_advantages, expected)
    row = modulate_completion_advantages(advantages, entropy, mask, 3, span="row")
    assert torch.equal(
        row.token_advantages, aem.modulate_advantages(tokens, entropy, mask, row_groups)[0]
    )
    several = (spans_from_mask(mask).span_row.bincount(minlength=9) > 1).nonzero()[:, 0]
    assert len(several) > 0
    weights = turn.token_advantages / tokens
    assert any(weights[i][mask[i]].unique().numel() > 1 for i in several.tolist())
    assert not torch.equal(turn.token_advantages, row.token_advantages)


def test_a_batch_without_any_loss_token_keeps_trls_advantages():
    advantages, entropy, _ = random_completions(seed=6, rows=4, length=3)
    empty = torch.zeros(4, 3, dtype=torch.bool)
    result = modulate_completion_advantages(
        advantages, entropy, empty, 2, stat_mask=torch.zeros(4, dtype=torch.bool)
    )
    assert torch.equal(result.token_advantages, advantages[:, None].expand(4, 3))
    assert torch.equal(result.completion_advantages, advantages)


def test_a_completion_without_a_loss_token_must_be_left_out_of_the_statistics():
    advantages, entropy, mask = random_completions(seed=5, rows=4, length=3)
    mask[2] = False
    with pytest.raises(ValueError, match=r"loss_mask has no token in row 2"):
        modulate_completion_advantages(advantages, entropy, mask, num_generations=2)
    with pytest.raises(ValueError, match=r"loss_mask has no token in row 2"):
        modulate_completion_advantages(advantages, entropy, mask, 2, span="row")


def gathered_batch(local: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """The processes' ``(advantages, entropy, mask)`` as one batch, right-padded to the widest."""
    width = max(entropy.shape[1] for _, entropy, _ in local)

    def padded(tensor: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]))

    advantages = torch.cat([advantages for advantages, _, _ in local])
    entropy = torch.cat([padded(entropy) for _, entropy, _ in local])
    mask = torch.cat([padded(mask) for _, _, mask in local])
    return advantages, entropy, mask


def run_processes(world: int, worker) -> list:
    """Run ``worker(rank, gather)`` in ``world`` threads whose ``gather`` concatenates each
    process's tensor in rank order, after padding every one with zero rows to the longest (what
    ``accelerator.pad_across_processes`` + ``accelerator.gather`` do)."""
    slots: list[torch.Tensor | None] = [None] * world
    barrier = threading.Barrier(world)
    results = [None] * world

    def run(rank: int) -> None:
        def all_gather(tensor: torch.Tensor) -> torch.Tensor:
            slots[rank] = tensor
            barrier.wait()
            longest = max(slot.shape[0] for slot in slots)
            padded = [
                torch.cat([slot, slot.new_zeros(longest - slot.shape[0], *slot.shape[1:])])
                for slot in slots
            ]
            barrier.wait()  # every rank has read the slots before any writes again
            return torch.cat(padded)

        results[rank] = worker(rank, all_gather)

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("span", ["turn", "row"])
def test_groups_spanning_processes_match_the_gathered_batch(span):
    """Two simulated processes with three multi-turn completions each and groups of two: group 1
    holds the last completion of process 0 and the first of process 1. The processes pad to
    different widths and hold different numbers of turns, as TRL's do."""
    world, local_rows = 2, 3
    local = [multi_turn_completions(seed=10 + rank, rows=local_rows) for rank in range(world)]
    assert local[0][1].shape[1] != local[1][1].shape[1]

    def worker(rank, gather):
        advantages, entropy, mask = local[rank]
        return modulate_completion_advantages(
            advantages, entropy, mask, num_generations=2, temperature=2.0, span=span,
            gather=gather, process_index=rank,
        )  # fmt: skip

    results = run_processes(world, worker)
    advantages, entropy, mask = gathered_batch(local)
    width = entropy.shape[1]
    tokens = advantages[:, None].expand(-1, width)
    if span == "turn":
        expected, stats = per_turn(tokens, entropy, mask, groups(6, 2), temperature=2.0)
    else:
        expected, stats = aem.modulate_advantages(
            tokens, entropy, mask, groups(6, 2), temperature=2.0
        )
    for rank, result in enumerate(results):
        rows = slice(rank * local_rows, (rank + 1) * local_rows)
        assert torch.equal(result.token_advantages, expected[rows, : local[rank][1].shape[1]])
    assert torch.equal(results[0].completion_advantages, results[1].completion_advantages)
    token_mean = (expected * mask).sum(dim=1) / mask.sum(dim=1)
    torch.testing.assert_close(results[0].completion_advantages, token_mean)
    for result in results:
        for name, value in stats.items():
            torch.testing.assert_close(result.stats[name], value, equal_nan=True)


def test_processes_with_single_turn_or_no_responses_match_the_gathered_batch():
    """Process 0 holds single-turn completions, process 1 multi-turn ones, process 2 only
    completions TRL masked out (no loss token, out of the statistics)."""
    single, multi = random_completions(seed=7, rows=4, length=5), multi_turn_completions(8, 4)
    single[2][:] = torch.arange(5)[None, :] < torch.tensor([[2], [5], [1], [3]])
    empty = (torch.randn(4), torch.rand(4, 6) * 3.0, torch.zeros(4, 6, dtype=torch.bool))
    local = [single, multi, empty]

    def worker(rank, gather):
        advantages, entropy, mask = local[rank]
        return modulate_completion_advantages(
            advantages, entropy, mask, num_generations=3, temperature=1.5,
            stat_mask=mask.any(dim=1), gather=gather, process_index=rank,
        )  # fmt: skip

    results = run_processes(3, worker)
    width = max(entropy.shape[1] for _, entropy, _ in local)
    padded = [
        [torch.nn.functional.pad(part, (0, width - part.shape[1])) for part in parts[1:]]
        for parts in local
    ]
    advantages = torch.cat([parts[0] for parts in local])
    entropy = torch.cat([parts[0] for parts in padded])
    mask = torch.cat([parts[1] for parts in padded])
    spans = spans_from_mask(mask)
    expected, stats = aem.modulate_advantages(
        advantages[:, None].expand(-1, width), entropy, mask, groups(12)[spans.span_row],
        span_index=spans.span_index, temperature=1.5,
    )  # fmt: skip
    for rank, result in enumerate(results):
        width_here = local[rank][1].shape[1]
        torch.testing.assert_close(
            result.token_advantages, expected[4 * rank : 4 * rank + 4, :width_here]
        )
        for name, value in stats.items():
            torch.testing.assert_close(result.stats[name], value, equal_nan=True)
    assert torch.equal(results[2].token_advantages, local[2][0][:, None].expand(4, 6))


def test_core_rejects_bad_input():
    advantages, entropy, mask = random_completions(seed=3, rows=4, length=3)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        modulate_completion_advantages(advantages, entropy, mask, num_generations=3)
    with pytest.raises(ValueError, match="token_entropy"):
        modulate_completion_advantages(advantages, entropy[:3], mask[:3], num_generations=2)
    with pytest.raises(ValueError, match="loss_mask"):
        modulate_completion_advantages(advantages, entropy, mask[:, :2], num_generations=2)
    with pytest.raises(ValueError, match="num_generations"):
        modulate_completion_advantages(advantages, entropy, mask, num_generations=0)
    with pytest.raises(ValueError, match="temperature"):
        modulate_completion_advantages(advantages, entropy, mask, 2, temperature=-0.5)
    with pytest.raises(ValueError, match="span"):
        modulate_completion_advantages(advantages, entropy, mask, 2, span="episode")
    with pytest.raises(ValueError, match="stat_mask"):
        modulate_completion_advantages(advantages, entropy, mask, 2, stat_mask=mask[:, 0][:3])


def test_empg_across_processes_equals_empg_on_the_gathered_batch():
    """``modulation="empg"``: EMPG over the gathered batch, each completion one trajectory whose
    assistant turns are its steps (turn numbers counted here by a plain loop)."""
    world, local_rows = 2, 3
    local = [multi_turn_completions(seed=20 + rank, rows=local_rows) for rank in range(world)]

    def worker(rank, gather):
        advantages, entropy, mask = local[rank]
        return modulate_completion_advantages(
            advantages, entropy, mask, num_generations=2, gather=gather, process_index=rank,
            modulation="empg", empg_k=1.5, empg_zeta=0.3,
        )  # fmt: skip

    results = run_processes(world, worker)
    advantages, entropy, mask = gathered_batch(local)
    width = entropy.shape[1]
    spans = spans_from_mask(mask)
    turns, seen = [], {}
    for row in spans.span_row.tolist():
        turns.append(seen.get(row, 0))
        seen[row] = turns[-1] + 1
    assert max(turns) >= 1, "some completion must hold several turns"
    expected = empg_modulate(
        advantages[:, None].expand(-1, width),
        entropy,
        mask,
        groups(6, 2)[spans.span_row],
        spans.span_index,
        trajectory_index=spans.span_row,
        turn_index=torch.tensor(turns),
        k=1.5,
        zeta=0.3,
    )
    for rank, result in enumerate(results):
        rows = slice(rank * local_rows, (rank + 1) * local_rows)
        own = expected.advantages[rows, : local[rank][1].shape[1]]
        torch.testing.assert_close(result.token_advantages, own, rtol=1e-6, atol=1e-6)
        assert set(result.stats) == set(expected.stats)
    with pytest.raises(ValueError, match="modulation must be one of"):
        modulate_completion_advantages(*local[0], 3, modulation="gigpo")


# ---------------------------------------------------------------- TRL's GRPO options in aem


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_std_scope_reproduces_trls_scale_rewards(tokenizer, tmp_path, scale):
    """TRL's advantages for ``scale_rewards`` = aem's grpo with ``std_scope`` / ``norm_by_std``
    and TRL's 1e-4 epsilon, on the rewards TRL computed."""
    seen: list[list[float]] = []

    def recorded(completion_ids: list[list[int]], **kwargs: object) -> list[float]:
        seen.append(token_id_reward(completion_ids))
        return seen[-1]

    config = {"scale_rewards": scale}
    trainer = make_trainer(GRPOTrainer, tokenizer, tmp_path, config=config, reward=recorded)
    batch = score_batch(trainer)
    rewards = torch.tensor(seen[-1])
    assert rewards.view(-1, NUM_GENERATIONS).std(dim=1).min() > 0, "groups must differ"
    inputs = AdvantageInputs(
        response_mask=torch.ones(BATCH, 1, dtype=torch.bool),
        group_id=groups(BATCH),
        traj_id=torch.arange(BATCH),
        turn=torch.zeros(BATCH, dtype=torch.long),
        scores=rewards,
    )
    options = AdvantageConfig(
        epsilon=1e-4,
        norm_by_std=scale != "none",
        std_scope="batch" if scale == "batch" else "group",
    )
    ours, _ = compute_advantages("grpo", inputs, options)
    torch.testing.assert_close(ours[:, 0], batch["advantages"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("corrected", [False, True])
def test_importance_corrected_kl_reproduces_trls_bias_correction(tokenizer, tmp_path, corrected):
    """TRL's loss with ``beta`` > 0 and zero advantages is beta times its KL term; aem's k3 KL,
    times the importance ratio when ``use_bias_correction_kl``, aggregated seq-mean-token-mean,
    gives the same value and the same gradient."""
    trainer = make_trainer(GRPOTrainer, tokenizer, tmp_path, config={"loss_type": "grpo"})
    batch = score_batch(trainer)
    trainer.beta = 0.1  # set after construction: no reference model is loaded, we supply its logps
    trainer.args.use_bias_correction_kl = corrected
    trainer.current_gradient_accumulation_steps = 1
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    width = batch["completion_ids"].shape[1]
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        log_p, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, ids, attention, width
        )
    batch["advantages"] = torch.zeros(BATCH)
    batch["old_per_token_logps"] = log_p + 0.3 * torch.randn(log_p.shape, generator=generator)
    batch["ref_per_token_logps"] = log_p + 0.5 * torch.randn(log_p.shape, generator=generator)
    mask = loss_mask(batch)
    parameters = [p for p in trainer.model.parameters() if p.requires_grad]

    trl_loss = trainer._compute_loss(trainer.model, batch)
    trl_grads = torch.autograd.grad(trl_loss, parameters)

    new_log_p, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
        trainer, trainer.model, ids, attention, width
    )
    kl = kl_penalty(new_log_p, batch["ref_per_token_logps"], "k3", clamp=None)
    if corrected:
        kl = importance_corrected_kl(kl, new_log_p, batch["old_per_token_logps"])
    our_loss = 0.1 * aggregate_loss(kl, mask, "seq-mean-token-mean")
    our_grads = torch.autograd.grad(our_loss, parameters)
    torch.testing.assert_close(our_loss, trl_loss, rtol=1e-5, atol=1e-7)
    for ours, theirs in zip(our_grads, trl_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)
