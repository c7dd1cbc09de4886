"""EMPG (Wang et al. 2025, Eq. 7-12) against a plain-loop reference in both layouts; errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aem
from aem.algorithms import empg_modulate, empg_modulate_advantages

# ---------------------------------------------------------------- reference (plain Python loops)


def reference_empg(steps, k, k_future, zeta, eps):
    """The published pseudocode, step by step, per batch, in float64 Python arithmetic.

    ``steps``: one dict per span with keys entropy (None if the span has no tokens), advantage
    (the span's token advantages), batch, trajectory, turn, counted. Returns per span the
    modulated token advantages.
    """
    out = [list(s["advantage"]) for s in steps]
    for b in {s["batch"] for s in steps}:
        members = [j for j, s in enumerate(steps) if s["batch"] == b and s["entropy"] is not None]
        stats = [j for j in members if steps[j]["counted"]]
        if not stats:
            continue
        low = min(steps[j]["entropy"] for j in stats)
        high = max(steps[j]["entropy"] for j in stats)
        norm = {
            j: min(1.0, max(0.0, (steps[j]["entropy"] - low) / (high - low + eps))) for j in members
        }
        mean_g = sum(math.exp(-k * norm[j]) for j in stats) / len(stats)
        g = {j: math.exp(-k * norm[j]) / (mean_g + eps) for j in members}
        f = {j: math.exp(-k_future * norm[j]) for j in members}
        modulated = {}
        for j in members:
            later = [
                q
                for q in stats
                if steps[q]["trajectory"] == steps[j]["trajectory"]
                and steps[q]["turn"] > steps[j]["turn"]
            ]
            bonus = 0.0
            if later and zeta > 0:
                nxt = min(later, key=lambda q: steps[q]["turn"])
                bonus = zeta * f[nxt]
            modulated[j] = [g[j] * a + bonus for a in steps[j]["advantage"]]
        shift = sum(sum(modulated[j]) / len(modulated[j]) for j in stats) / len(stats)
        for j in members:
            out[j] = [a - shift for a in modulated[j]]
    return out


def random_steps(seed: int, trajectories: int, turns: int, batches: int, max_len: int = 4):
    """Ragged spans: random lengths (some 0), shuffled turn order, some spans not counted."""
    g = torch.Generator().manual_seed(seed)
    steps = []
    for i in range(trajectories):
        batch = int(torch.randint(0, batches, (1,), generator=g))
        order = torch.randperm(turns, generator=g).tolist()
        outcome = float(torch.randn(1, generator=g, dtype=torch.float64))
        for turn in order:
            n = int(torch.randint(0, max_len + 1, (1,), generator=g))
            ent = (torch.rand(n, generator=g, dtype=torch.float64) * 2).tolist()
            steps.append(
                {
                    "tokens": ent,
                    "entropy": sum(ent) / n if n else None,
                    "advantage": [outcome] * n,
                    "batch": batch * 11 + 3,
                    "trajectory": i * 7 + 1,
                    "group": batch * 5 + i % 2,
                    "turn": turn * 3,
                    "counted": bool(torch.rand(1, generator=g) > 0.15),
                }
            )
    return steps


def rows_layout(steps, max_len: int = 4):
    rows = len(steps)
    ent = torch.zeros(rows, max_len, dtype=torch.float64)
    adv = torch.full((rows, max_len), 9.0, dtype=torch.float64)  # off-mask: must stay 9
    mask = torch.zeros(rows, max_len, dtype=torch.bool)
    for j, s in enumerate(steps):
        n = len(s["tokens"])
        ent[j, :n] = torch.tensor(s["tokens"], dtype=torch.float64)
        adv[j, :n] = torch.tensor(s["advantage"], dtype=torch.float64)
        mask[j, :n] = True
    return adv, ent, mask


def span_ids(steps):
    return {
        name: torch.tensor([s[key] for s in steps])
        for name, key in (
            ("group_index", "group"),
            ("trajectory_index", "trajectory"),
            ("turn_index", "turn"),
            ("batch_index", "batch"),
        )
    }


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    trajectories=st.integers(1, 7),
    turns=st.integers(1, 4),
    batches=st.integers(1, 3),
    k=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    zeta=st.sampled_from([0.0, 0.1, 0.7]),
)
def test_rows_layout_equals_reference(seed, trajectories, turns, batches, k, zeta):
    steps = random_steps(seed, trajectories, turns, batches)
    adv, ent, mask = rows_layout(steps)
    ids = span_ids(steps)
    stat = torch.tensor([s["counted"] for s in steps])
    out, _ = empg_modulate_advantages(
        adv,
        ent,
        mask,
        ids["group_index"],
        trajectory_index=ids["trajectory_index"],
        turn_index=ids["turn_index"],
        batch_index=ids["batch_index"],
        k=k,
        k_future=2.0,
        zeta=zeta,
        stat_mask=stat,
    )
    expected = reference_empg(steps, k, 2.0, zeta, 1e-8)
    for j, s in enumerate(steps):
        n = len(s["tokens"])
        torch.testing.assert_close(out[j, :n], torch.tensor(expected[j], dtype=torch.float64))
    assert bool((out[~mask] == 9.0).all())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), trajectories=st.integers(1, 6), turns=st.integers(1, 4))
def test_trajectory_layout_equals_rows_layout_and_reference(seed, trajectories, turns):
    """One row per trajectory holding all its turns (with gaps) == one row per turn."""
    steps = random_steps(seed, trajectories, turns, batches=2)
    adv_r, ent_r, mask_r = rows_layout(steps)
    ids = span_ids(steps)
    by_trajectory: dict[int, list[int]] = {}
    for j, s in enumerate(steps):
        by_trajectory.setdefault(s["trajectory"], []).append(j)
    gap = 2
    cols = max(sum(len(steps[j]["tokens"]) + gap for j in js) for js in by_trajectory.values())
    rows = len(by_trajectory)
    adv_t = torch.full((rows, cols), -5.0, dtype=torch.float64)
    ent_t = torch.zeros(rows, cols, dtype=torch.float64)
    mask_t = torch.zeros(rows, cols, dtype=torch.bool)
    span_t = torch.full((rows, cols), -1, dtype=torch.long)
    where = {}
    for row, js in enumerate(by_trajectory.values()):
        pos = 0
        for j in sorted(js, key=lambda q: steps[q]["turn"]):
            pos += gap
            n = len(steps[j]["tokens"])
            adv_t[row, pos : pos + n] = adv_r[j, :n]
            ent_t[row, pos : pos + n] = ent_r[j, :n]
            mask_t[row, pos : pos + n] = True
            span_t[row, pos : pos + n] = j
            where[j] = (row, pos, n)
            pos += n
    stat = torch.tensor([s["counted"] for s in steps])
    kwargs = {
        "trajectory_index": ids["trajectory_index"],
        "turn_index": ids["turn_index"],
        "batch_index": ids["batch_index"],
        "stat_mask": stat,
    }
    out_t = empg_modulate(adv_t, ent_t, mask_t, ids["group_index"], span_t, **kwargs)
    out_r = empg_modulate(adv_r, ent_r, mask_r, ids["group_index"], **kwargs)
    expected = reference_empg(steps, 1.0, 1.0, 0.1, 1e-8)
    for j, (row, pos, n) in where.items():
        torch.testing.assert_close(out_t.advantages[row, pos : pos + n], out_r.advantages[j, :n])
        torch.testing.assert_close(
            out_t.advantages[row, pos : pos + n], torch.tensor(expected[j], dtype=torch.float64)
        )
    assert bool((out_t.advantages[~mask_t] == -5.0).all())
    for name in ("span_entropy", "weights", "bonus", "shift"):
        torch.testing.assert_close(getattr(out_t, name), getattr(out_r, name))
    for key in out_t.stats:
        torch.testing.assert_close(out_t.stats[key], out_r.stats[key], equal_nan=True)


def test_hand_computed_two_step_trajectory():
    """H = [0, 2] in one trajectory: Hn = [0, 1), g = exp(-Hn) / mean, bonus on step 0 only."""
    adv = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    ent = torch.tensor([[0.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    mask = torch.ones(2, 2, dtype=torch.bool)
    out = empg_modulate(
        adv,
        ent,
        mask,
        torch.tensor([0, 0]),
        trajectory_index=torch.tensor([5, 5]),
        turn_index=torch.tensor([0, 1]),
        zeta=0.1,
    )
    hn = [0.0, 2.0 / (2.0 + 1e-8)]
    e = [math.exp(-x) for x in hn]
    g = [x / (sum(e) / 2 + 1e-8) for x in e]
    modulated = [g[0] + 0.1 * math.exp(-hn[1]), g[1]]
    shift = sum(modulated) / 2
    expected = torch.tensor([[m - shift] * 2 for m in modulated], dtype=torch.float64)
    torch.testing.assert_close(out.advantages, expected)
    torch.testing.assert_close(out.weights, torch.tensor(g, dtype=torch.float64))
    assert float(out.bonus[1]) == 0.0 and float(out.bonus[0]) > 0.0
    assert abs(float(out.advantages.mean())) < 1e-12  # Eq. 7: zero mean over steps


def test_fp32_compute_for_low_precision_input_and_no_gradient():
    adv = torch.randn(6, 3, dtype=torch.bfloat16, requires_grad=True)
    ent = torch.rand(6, 3, dtype=torch.bfloat16, requires_grad=True)
    out = empg_modulate(
        adv,
        ent,
        torch.ones(6, 3, dtype=torch.bool),
        torch.zeros(6, dtype=torch.long),
        trajectory_index=torch.tensor([0, 0, 0, 1, 1, 1]),
        turn_index=torch.tensor([0, 1, 2, 0, 1, 2]),
    )
    assert out.advantages.dtype == torch.bfloat16 and not out.advantages.requires_grad
    assert out.weights.dtype == torch.float32 and out.span_entropy.dtype == torch.float32


def test_exported_from_top_level():
    assert aem.empg_modulate_advantages is empg_modulate_advantages


# ---------------------------------------------------------------- errors


def _args(**change):
    args = {
        "advantages": torch.zeros(3, 2),
        "token_entropy": torch.ones(3, 2),
        "response_mask": torch.ones(3, 2, dtype=torch.bool),
        "group_index": torch.zeros(3, dtype=torch.long),
        "trajectory_index": torch.tensor([0, 0, 1]),
        "turn_index": torch.tensor([0, 1, 0]),
    }
    args.update(change)
    return args


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"trajectory_index": None}, "trajectory_index"),
        ({"turn_index": None}, "turn_index"),
        ({"turn_index": torch.tensor([0, 0, 0])}, "turn_index"),
        ({"turn_index": torch.tensor([0.0, 1.0, 0.0])}, "turn_index"),
        ({"trajectory_index": torch.tensor([0, 0])}, "trajectory_index"),
        ({"group_index": torch.tensor([0, 1, 1])}, "group_index"),
        ({"batch_index": torch.tensor([0, 1, 1])}, "batch_index"),
        ({"zeta": -0.1}, "zeta"),
        ({"k": float("nan")}, "k"),
        ({"k_future": float("inf")}, "k_future"),
        ({"eps": -1.0}, "eps"),
        ({"token_entropy": torch.ones(3, 3)}, "token_entropy"),
        ({"advantages": torch.zeros(3)}, "advantages"),
        ({"response_mask": torch.ones(2, 2)}, "response_mask"),
        ({"stat_mask": torch.ones(2, dtype=torch.bool)}, "stat_mask"),
        ({"token_entropy": torch.tensor([[1.0, float("nan")]] * 3)}, "token_entropy"),
        ({"advantages": torch.tensor([[1.0, float("inf")]] * 3)}, "advantages"),
    ],
)
def test_bad_input_names_the_argument(change, named):
    with pytest.raises(ValueError, match=named):
        empg_modulate(**_args(**change))


def test_without_the_bonus_no_trajectory_ids_are_needed():
    out = empg_modulate(**_args(trajectory_index=None, turn_index=None, zeta=0.0))
    assert torch.equal(out.bonus, torch.zeros(3))
