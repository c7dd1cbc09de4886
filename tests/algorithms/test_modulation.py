"""AEM modulation (Eq. 13-15) against a plain per-group loop, plus its properties and errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aem

# ---------------------------------------------------------------- reference (plain Python loops)


def reference_weights(
    h: list[float], groups: list[int], tau: float, eps: float, counted: list[bool]
) -> list[float]:
    """Eq. 14-15 written out span by span, in float64 Python arithmetic."""
    weights = [1.0] * len(h)
    for g in set(groups):
        members = [j for j in range(len(h)) if groups[j] == g]
        stats = [j for j in members if counted[j]]
        if not stats:
            continue
        low = min(h[j] for j in stats)
        high = max(h[j] for j in stats)
        if high - low <= eps:
            continue
        u = {j: min(1.0, max(0.0, (h[j] - low) / (high - low))) for j in members}
        mean = sum(math.exp(-tau * u[j]) for j in stats) / len(stats)
        for j in members:
            weights[j] = math.exp(-tau * u[j]) / mean
    return weights


def reference_modulate(adv, ent, mask, groups, span_index, tau, eps, stat):
    """Per-span loop: mean entropy over the span's tokens, then w * A on those tokens."""
    rows, cols = len(adv), len(adv[0])
    num_spans = len(groups)
    sums = [0.0] * num_spans
    counts = [0] * num_spans
    for b in range(rows):
        for t in range(cols):
            if mask[b][t]:
                j = b if span_index is None else span_index[b][t]
                sums[j] += ent[b][t]
                counts[j] += 1
    h = [s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)]
    counted = [c > 0 and stat[j] for j, c in enumerate(counts)]
    w = reference_weights(h, groups, tau, eps, counted)
    w = [w[j] if counts[j] else 1.0 for j in range(num_spans)]
    out = [[adv[b][t] for t in range(cols)] for b in range(rows)]
    for b in range(rows):
        for t in range(cols):
            if mask[b][t]:
                j = b if span_index is None else span_index[b][t]
                out[b][t] = adv[b][t] * w[j]
    return out, h, w


def random_batch(seed: int, rows: int, cols: int, groups: int, empty_row: bool = True):
    g = torch.Generator().manual_seed(seed)
    ent = torch.rand(rows, cols, generator=g, dtype=torch.float64) * 3
    adv = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, cols + 1, (rows,), generator=g)
    if empty_row and rows > 2:
        lengths[1] = 0
    mask = torch.arange(cols)[None, :] < lengths[:, None]
    group_index = torch.randint(0, groups, (rows,), generator=g) * 97 + 5
    return adv, ent, mask, group_index


# ---------------------------------------------------------------- equality with the reference


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 24),
    cols=st.integers(1, 9),
    groups=st.integers(1, 5),
    tau=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
)
def test_rows_layout_equals_reference_loop(seed, rows, cols, groups, tau):
    adv, ent, mask, gid = random_batch(seed, rows, cols, groups)
    stat = torch.rand(rows, generator=torch.Generator().manual_seed(seed + 1)) > 0.2
    out, _ = aem.modulate_advantages(adv, ent, mask, gid, temperature=tau, stat_mask=stat)
    expected, h, _ = reference_modulate(
        adv.tolist(), ent.tolist(), mask.tolist(), gid.tolist(), None, tau, 1e-6, stat.tolist()
    )
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(
        aem.response_entropy(ent, mask), torch.tensor(h, dtype=torch.float64)
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), trajs=st.integers(1, 6), turns=st.integers(1, 4))
def test_trajectory_layout_equals_rows_layout_and_reference(seed, trajs, turns):
    """One row per trajectory with several spans == one row per turn, token for token."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 5, (trajs, turns), generator=g)
    obs_gap = 2  # masked environment tokens between turns
    cols = int((lengths.sum(1) + obs_gap * turns).max())
    ent_t = torch.zeros(trajs, cols, dtype=torch.float64)
    adv_t = torch.zeros(trajs, cols, dtype=torch.float64)
    mask_t = torch.zeros(trajs, cols, dtype=torch.bool)
    span_t = torch.full((trajs, cols), -1, dtype=torch.long)
    rows_ent = torch.zeros(trajs * turns, 4, dtype=torch.float64)
    rows_adv = torch.zeros(trajs * turns, 4, dtype=torch.float64)
    rows_mask = torch.zeros(trajs * turns, 4, dtype=torch.bool)
    groups = torch.randint(0, 2, (trajs,), generator=g)
    for i in range(trajs):
        pos = 0
        for k in range(turns):
            pos += obs_gap
            n = int(lengths[i, k])
            e = torch.rand(n, generator=g, dtype=torch.float64)
            a = torch.randn(1, generator=g, dtype=torch.float64).expand(n)
            j = i * turns + k
            ent_t[i, pos : pos + n], adv_t[i, pos : pos + n] = e, a
            mask_t[i, pos : pos + n], span_t[i, pos : pos + n] = True, j
            rows_ent[j, :n], rows_adv[j, :n], rows_mask[j, :n] = e, a, True
            pos += n
    span_groups = groups.repeat_interleave(turns)
    out_t, stats_t = aem.modulate_advantages(adv_t, ent_t, mask_t, span_groups, span_index=span_t)
    out_r, stats_r = aem.modulate_advantages(rows_adv, rows_ent, rows_mask, span_groups)
    for j in range(trajs * turns):
        i, where = j // turns, span_t[j // turns] == j
        torch.testing.assert_close(out_t[i][where], out_r[j][rows_mask[j]])
    torch.testing.assert_close(out_t[~mask_t], adv_t[~mask_t])
    for key in stats_t:
        torch.testing.assert_close(stats_t[key], stats_r[key], equal_nan=True)
    expected, _, _ = reference_modulate(
        adv_t.tolist(),
        ent_t.tolist(),
        mask_t.tolist(),
        span_groups.tolist(),
        span_t.tolist(),
        1.0,
        1e-6,
        [True] * (trajs * turns),
    )
    torch.testing.assert_close(out_t, torch.tensor(expected, dtype=torch.float64))


def test_hand_computed_group():
    """h = [0, 1, 2] in one group: u = [0, .5, 1], w = exp(-u) / mean(exp(-u))."""
    h = torch.tensor([0.0, 1.0, 2.0])
    w = aem.aem_coefficients(h, torch.tensor([4, 4, 4]))
    e = [1.0, math.exp(-0.5), math.exp(-1.0)]
    expected = torch.tensor([x / (sum(e) / 3) for x in e])
    torch.testing.assert_close(w, expected)
    assert w[0] > 1 > w[2]


# ---------------------------------------------------------------- properties


@settings(max_examples=80, deadline=None)
@given(
    h=st.lists(st.floats(0, 12, allow_nan=False), min_size=2, max_size=40),
    tau=st.floats(0.05, 8.0),
)
def test_group_mean_is_one_and_weights_strictly_decrease(h, tau):
    entropy = torch.tensor(h, dtype=torch.float64)
    w = aem.aem_coefficients(entropy, torch.zeros(len(h), dtype=torch.long), temperature=tau)
    if float(entropy.max() - entropy.min()) <= 1e-6:
        assert torch.equal(w, torch.ones_like(w))
        return
    assert abs(float(w.mean()) - 1.0) < 1e-12
    order = torch.argsort(entropy)
    hs, ws = entropy[order], w[order]
    distinct = (hs[1:] - hs[:-1]) > 1e-9 * (hs[-1] - hs[0])  # representably different u
    assert bool((ws[1:][distinct] < ws[:-1][distinct]).all())


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shift=st.floats(-50, 50),
    scale=st.floats(0.01, 100),
)
def test_invariant_to_shift_and_scale_of_a_group(seed, shift, scale):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(12, generator=g, dtype=torch.float64) + 0.5
    gid = torch.tensor([0] * 6 + [1] * 6)
    moved = h.clone()
    moved[:6] = moved[:6] * scale + shift
    w = aem.aem_coefficients(h, gid)
    torch.testing.assert_close(aem.aem_coefficients(moved, gid, eps=0.0), w)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_permutation_equivariant(seed):
    adv, ent, mask, gid = random_batch(seed, 16, 7, 3)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(seed))
    out, _ = aem.modulate_advantages(adv, ent, mask, gid)
    out_p, _ = aem.modulate_advantages(adv[perm], ent[perm], mask[perm], gid[perm])
    torch.testing.assert_close(out_p, out[perm])


def test_degenerate_group_gives_ones_and_temperature_zero_is_off():
    h = torch.tensor([1.0, 1.0 + 5e-7, 1.0, 0.2, 0.9])
    gid = torch.tensor([0, 0, 0, 1, 1])
    w = aem.aem_coefficients(h, gid)
    assert torch.equal(w[:3], torch.ones(3))
    assert w[3] > 1 > w[4]
    assert torch.equal(aem.aem_coefficients(h, gid, temperature=0.0), torch.ones(5))
    # a singleton group is degenerate too
    assert torch.equal(aem.aem_coefficients(torch.tensor([3.0]), torch.tensor([9])), torch.ones(1))


def test_larger_temperature_separates_more():
    h = torch.tensor([0.1, 0.4, 0.7, 1.0])
    gid = torch.zeros(4, dtype=torch.long)
    spread = [float(aem.aem_coefficients(h, gid, temperature=t).std()) for t in (0.5, 1, 2, 4)]
    assert spread == sorted(spread) and spread[0] < spread[-1]


def test_stat_mask_excludes_duplicates_from_statistics():
    """A duplicated padding row must not change the group's weights (verl-agent adjust_batch)."""
    h = torch.tensor([0.2, 0.5, 0.9])
    gid = torch.tensor([1, 1, 1])
    w = aem.aem_coefficients(h, gid)
    padded = aem.aem_coefficients(
        torch.tensor([0.2, 0.5, 0.9, 0.2, 5.0]),
        torch.tensor([1, 1, 1, 1, 1]),
        stat_mask=torch.tensor([True, True, True, False, False]),
    )
    torch.testing.assert_close(padded[:3], w)
    torch.testing.assert_close(padded[3], w[0])  # same entropy, same weight
    # entropy beyond the counted range is clipped to u = 1
    torch.testing.assert_close(padded[4], w[2])


def test_empty_span_gets_weight_one_and_stays_out_of_statistics():
    adv = torch.ones(4, 3)
    ent = torch.tensor([[0.1, 0.1, 0.1], [9.0, 9.0, 9.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    gid = torch.zeros(4, dtype=torch.long)
    out, stats = aem.modulate_advantages(adv, ent, mask, gid)
    assert torch.equal(out[1], adv[1])
    expected = aem.aem_coefficients(torch.tensor([0.1, 0.5, 1.0]), torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(out[[0, 2, 3], 0], expected)
    assert float(stats["aem/weight_max"]) == pytest.approx(float(expected.max()))


def test_modulate_returns_the_span_entropies_and_weights_it_applied():
    """``modulate`` == ``modulate_advantages`` plus the per-span h (Eq. 13) and w (Eq. 15)."""
    from aem.algorithms.modulation import modulate

    g = torch.Generator().manual_seed(3)
    adv, ent = torch.randn(6, 5, generator=g), torch.rand(6, 5, generator=g)
    mask = torch.rand(6, 5, generator=g) > 0.3
    mask[4] = False  # an empty span: weight 1, out of the statistics
    gid = torch.tensor([0, 0, 0, 1, 1, 1])
    result = modulate(adv, ent, mask, gid, temperature=2.0)
    out, stats = aem.modulate_advantages(adv, ent, mask, gid, temperature=2.0)
    assert torch.equal(result.advantages, out)
    assert result.stats.keys() == stats.keys()
    torch.testing.assert_close(result.span_entropy, aem.response_entropy(ent, mask))
    counted = torch.tensor([True, True, True, True, False, True])
    expected = aem.aem_coefficients(result.span_entropy[counted], gid[counted], temperature=2.0)
    torch.testing.assert_close(result.weights[counted], expected)
    assert float(result.weights[4]) == 1.0
    torch.testing.assert_close(out[mask], (adv * result.weights[:, None])[mask])


def test_dtypes_gradients_and_untouched_positions():
    adv, ent, mask, gid = random_batch(3, 8, 5, 2)
    ent_bf16 = ent.to(torch.bfloat16).requires_grad_()
    adv32 = adv.float().requires_grad_()
    out, _ = aem.modulate_advantages(adv32, ent_bf16, mask.float(), gid.int())
    assert out.dtype == torch.float32 and not out.requires_grad
    assert aem.response_entropy(ent_bf16, mask).dtype == torch.float32
    torch.testing.assert_close(out[~mask], adv32.detach()[~mask])
    # NaN outside the response mask is ignored
    ent_nan = ent.clone()
    ent_nan[~mask] = float("nan")
    out_nan, _ = aem.modulate_advantages(adv, ent_nan, mask, gid)
    torch.testing.assert_close(out_nan, aem.modulate_advantages(adv, ent, mask, gid)[0])


def test_stats_report_sign_split_entropy_and_degenerate_share():
    ent = torch.tensor([[1.0], [2.0], [3.0], [4.0], [7.0], [7.0]])
    adv = torch.tensor([[1.0], [-1.0], [1.0], [-2.0], [0.5], [0.5]])
    mask = torch.ones(6, 1, dtype=torch.bool)
    gid = torch.tensor([0, 0, 0, 0, 1, 1])
    _, stats = aem.modulate_advantages(adv, ent, mask, gid)
    assert float(stats["aem/entropy_pos"]) == pytest.approx((1 + 3 + 7 + 7) / 4)
    assert float(stats["aem/entropy_neg"]) == pytest.approx((2 + 4) / 2)
    assert float(stats["aem/degenerate_group_frac"]) == pytest.approx(0.5)
    assert float(stats["aem/weight_min"]) < 1 < float(stats["aem/weight_max"])


# ---------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    adv, ent, mask, gid = random_batch(0, 4, 3, 2, empty_row=False)
    cases = [
        (dict(advantages=adv[:, :2]), "token_entropy"),
        (dict(response_mask=mask[:3]), "response_mask"),
        (dict(group_index=gid[:3]), "group_index"),
        (dict(group_index=gid.float()), "group_index"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(eps=-1e-3), "eps"),
        (dict(advantages=torch.zeros(0, 3)), "advantages"),
        (dict(stat_mask=torch.ones(3, dtype=torch.bool)), "stat_mask"),
    ]
    base = dict(advantages=adv, token_entropy=ent, response_mask=mask, group_index=gid)
    for change, name in cases:
        with pytest.raises(ValueError, match=name):
            aem.modulate_advantages(**{**base, **change})
    bad = ent.clone()
    bad[2, 0] = float("inf")
    with pytest.raises(
        ValueError, match=r"token_entropy must be finite, got inf at index \(2, 0\)"
    ):
        aem.modulate_advantages(adv, bad, mask, gid)
    bad_adv = adv.clone()
    bad_adv[1, 0] = float("nan")
    with pytest.raises(ValueError, match="advantages must be finite"):
        aem.modulate_advantages(bad_adv, ent, mask, gid)


def test_bad_span_index():
    ent = torch.rand(2, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    gid = torch.zeros(3, dtype=torch.long)
    good = torch.tensor([[0, 0, -1, -1], [1, 2, 2, -1]])
    aem.modulate_advantages(torch.ones(2, 4), ent, mask, gid, span_index=good)
    for bad, message in [
        (torch.tensor([[0, 0, -1, -1], [1, 3, 2, -1]]), "span_index must be < the number"),
        (torch.tensor([[0, -1, -1, -1], [1, 2, 2, -1]]), "span id >= 0 on every response"),
        (torch.tensor([[0, 0, -2, -1], [1, 2, 2, -1]]), "span_index must be >= -1"),
        (good.float(), "span_index must have an integer dtype"),
        (good[:, :3], "span_index must have shape"),
    ]:
        with pytest.raises(ValueError, match=message):
            aem.modulate_advantages(torch.ones(2, 4), ent, mask, gid, span_index=bad)
    with pytest.raises(ValueError, match="span_entropy must be finite"):
        aem.aem_coefficients(torch.tensor([1.0, float("nan")]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="span_entropy must not be empty"):
        aem.aem_coefficients(torch.zeros(0), torch.zeros(0, dtype=torch.long))
