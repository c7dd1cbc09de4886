"""The sweep's figures (matplotlib, Agg): Fig. 3 curves and overlay, Fig. 2 (Analysis A),
Fig. 4 latency breakdown, predicted-vs-measured entropy drift. Okabe-Ito colours throughout."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aem.compare.results import RunResult, by_arm
from aem.compare.settings import ANALYSIS_MASKS, BASE, arm_label, arm_name

BASE_COLOUR, AEM_COLOUR = "#0072B2", "#D55E00"
ARM_STYLES = {BASE: (BASE_COLOUR, "--", "s"), "aem": (AEM_COLOUR, "-", "o")}
OTHER_STYLES = (("#009E73", "-.", "^"), ("#CC79A7", ":", "D"), ("#E69F00", "-", "v"))


def arm_styles(modulations: tuple[str, ...]) -> list[tuple[str, str, str, str]]:
    """``(modulation, colour, line style, marker)`` of the base arm and each modulation's."""
    others = iter(OTHER_STYLES)
    return [
        (name, *(ARM_STYLES[name] if name in ARM_STYLES else next(others)))
        for name in (BASE, *modulations)
    ]


MASK_STYLE = {
    None: ("#000000", "-", "unmasked"),
    "decreasing": ("#E69F00", "--", "entropy-decreasing quadrants masked"),
    "increasing": ("#56B4E9", "-.", "entropy-increasing quadrants masked"),
}
PHASES = ("rollout", "scoring", "reference", "critic", "advantage", "aem", "update")
PHASE_COLOURS = {
    "rollout": "#0072B2",
    "scoring": "#56B4E9",
    "reference": "#009E73",
    "critic": "#F0E442",
    "advantage": "#CC79A7",
    "aem": "#D55E00",
    "update": "#E69F00",
}
ENTROPY_LABEL = "mean response entropy (nats/token)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(runs: list[RunResult], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterations, mean over seeds and sample std over seeds (0 where one seed) of ``key``."""
    per_seed = [run.series(key) for run in runs]
    steps = sorted({it for series in per_seed for it in series})
    means, stds = [], []
    for it in steps:
        values = [series[it] for series in per_seed if it in series]
        means.append(statistics.fmean(values))
        stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
    return np.array(steps), np.array(means), np.array(stds)


def _plot_band(axis, runs, key, colour, style, label, bounds=(-np.inf, np.inf)) -> None:
    steps, mean, std = _band(runs, key)
    if len(steps) == 0:
        return
    axis.plot(steps, mean, style, color=colour, label=f"{label} (n={len(runs)})", marker=".")
    low, high = np.clip(mean - std, *bounds), np.clip(mean + std, *bounds)
    axis.fill_between(steps, low, high, color=colour, alpha=0.15, linewidth=0)


def _integer_steps(axis) -> None:
    """Whole iterations on x; plain numbers on y (no '+5.76' offset)."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.ticklabel_format(axis="y", useOffset=False)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def figure3_curves(
    results: list[RunResult],
    algos: list[str],
    path: str | Path,
    modulations: tuple[str, ...] = ("aem",),
) -> Path:
    """Mean response entropy and rollout success vs iteration, base vs each modulation, mean ±
    std band."""
    plt = _pyplot()
    arms = by_arm([r for r in results if not r.spec.analysis and r.records])
    fig, axes = plt.subplots(
        len(algos), 2, figsize=(11, 3.4 * len(algos)), squeeze=False, constrained_layout=True
    )
    for row, algo in enumerate(algos):
        left, right = axes[row]
        for modulation, colour, style, _ in arm_styles(modulations):
            runs = arms.get(arm_name(algo, modulation), [])
            label = arm_label(algo, modulation)
            _plot_band(left, runs, "entropy/response_mean", colour, style, label)
            _plot_band(right, runs, "rollout/success", colour, style, label, (0.0, 1.0))
        left.set(title=f"{algo.upper()}: response entropy", xlabel="training iteration")
        left.set_ylabel(ENTROPY_LABEL)
        right.set(
            title=f"{algo.upper()}: training success rate",
            xlabel="training iteration",
            ylabel="success rate (rollouts)",
            ylim=(-0.02, 1.02),
        )
        for axis in (left, right):
            _integer_steps(axis)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    fig.suptitle("Figure 3: entropy and success over training (mean ± std over seeds)")
    return _save(fig, Path(path))


def representative_seed(results: list[RunResult], algo: str, modulation: str = "aem") -> int | None:
    """The seed whose modulated - base final success difference is the median one (lowest on
    ties)."""
    finals = {
        (r.spec.modulation, r.spec.seed): r.final_success().get("overall")
        for r in results
        if not r.spec.analysis and r.spec.algo == algo and r.finished
    }
    diffs = {
        seed: finals[(modulation, seed)] - finals[(BASE, seed)]
        for (arm, seed) in finals
        if arm == modulation and (BASE, seed) in finals
    }
    if not diffs:
        return None
    ordered = sorted(diffs.items(), key=lambda item: (item[1], item[0]))
    return ordered[(len(ordered) - 1) // 2][0]


def figure3_overlay(
    results: list[RunResult], algo: str, path: str | Path, modulation: str = "aem"
) -> int | None:
    """Entropy (left axis) with success (right axis) for one representative seed's pair (the
    base and ``modulation``).

    Returns the seed drawn (None, and no file, when no pair finished)."""
    seed = representative_seed(results, algo, modulation)
    if seed is None:
        return None
    plt = _pyplot()
    pair = {
        r.spec.modulation: r
        for r in results
        if not r.spec.analysis and r.spec.algo == algo and r.spec.seed == seed
    }
    fig, entropy_axis = plt.subplots(figsize=(8, 4.2), constrained_layout=True)
    success_axis = entropy_axis.twinx()
    for arm, colour, _, _ in arm_styles((modulation,)):
        run, label = pair[arm], arm_label(algo, arm)
        entropy = run.series("entropy/response_mean")
        success = run.series("rollout/success")
        entropy_axis.plot(
            list(entropy), list(entropy.values()), "-", color=colour, label=f"{label} entropy"
        )
        success_axis.plot(
            list(success),
            list(success.values()),
            ":",
            marker="o",
            color=colour,
            label=f"{label} success",
        )
    entropy_axis.set(xlabel="training iteration", ylabel=ENTROPY_LABEL)
    success_axis.set(ylabel="success rate (rollouts, dotted)", ylim=(-0.02, 1.02))
    handles = entropy_axis.get_legend_handles_labels()
    more = success_axis.get_legend_handles_labels()
    entropy_axis.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="best")
    entropy_axis.grid(alpha=0.3)
    _integer_steps(entropy_axis)
    entropy_axis.set_title(
        f"Figure 3 (overlay): {arm_label(algo, BASE)} vs {arm_label(algo, modulation)}, "
        f"seed {seed} (median pair)"
    )
    _save(fig, Path(path))
    return seed


def figure2_analysis(results: list[RunResult], path: str | Path) -> Path | None:
    """Analysis A: mean response entropy over the first iterations under each quadrant mask."""
    arms = by_arm([r for r in results if r.spec.analysis and r.records])
    if not arms:
        return None
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 4.2), constrained_layout=True)
    algo = next(iter(arms.values()))[0].spec.algo
    for mask in ANALYSIS_MASKS:
        colour, style, label = MASK_STYLE[mask]
        runs = arms.get(f"analysis/{mask or 'unmasked'}", [])
        _plot_band(axis, runs, "entropy/response_mean", colour, style, label)
    axis.set(
        title=f"Figure 2 (Analysis A): entropy under quadrant masks, {algo.upper()} without AEM",
        xlabel="training iteration",
        ylabel=ENTROPY_LABEL,
    )
    _integer_steps(axis)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(fig, Path(path))


@dataclass(frozen=True)
class Latency:
    """Mean seconds per iteration of each phase for one arm, over its iterations and seeds."""

    arm: str
    phases: dict[str, float]
    total: float

    @property
    def aem_share(self) -> float:
        return self.phases.get("aem", 0.0) / self.total if self.total > 0 else math.nan


def latencies(
    results: list[RunResult], algos: list[str], modulations: tuple[str, ...] = ("aem",)
) -> list[Latency]:
    """One :class:`Latency` per arm (base and each modulation) that has recorded iterations; the
    modulation's time is the ``aem`` phase (named for AEM, timing whichever one runs)."""
    arms = by_arm([r for r in results if not r.spec.analysis])
    out = []
    for algo in algos:
        for modulation in (BASE, *modulations):
            records = [
                record
                for run in arms.get(arm_name(algo, modulation), [])
                for record in run.records
                if record.get("iteration", -1) >= 0 and record.get("time/total") is not None
            ]
            if not records:
                continue
            phases = {
                phase: statistics.fmean(r.get(f"time/{phase}") or 0.0 for r in records)
                for phase in PHASES
                if any(r.get(f"time/{phase}") is not None for r in records)
            }
            total = statistics.fmean(r["time/total"] for r in records)
            out.append(Latency(arm_label(algo, modulation), phases, total))
    return out


def figure4_latency(rows: list[Latency], path: str | Path) -> Path | None:
    """Stacked horizontal bars of seconds per iteration by phase, AEM's share printed."""
    if not rows:
        return None
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(9, 1.8 + 0.6 * len(rows)), constrained_layout=True)
    labels = [row.arm for row in rows]
    left = np.zeros(len(rows))
    for phase in PHASES:
        widths = np.array([row.phases.get(phase, 0.0) for row in rows])
        if not widths.any():
            continue
        axis.barh(labels, widths, left=left, color=PHASE_COLOURS[phase], label=phase)
        left += widths
    for index, row in enumerate(rows):
        axis.text(
            left[index],
            index,
            f"  {row.total:.3g} s, AEM {100 * row.aem_share:.2f}%",
            va="center",
            fontsize=8,
        )
    axis.set(
        title="Figure 4: latency per training iteration by phase",
        xlabel="seconds per iteration (mean over iterations and seeds)",
        xlim=(0, float(left.max()) * 1.45 if left.max() > 0 else 1),
    )
    axis.invert_yaxis()
    fig.legend(ncol=7, fontsize=8, loc="outside lower center")
    return _save(fig, Path(path))


@dataclass(frozen=True)
class DriftFit:
    """Agreement of one entropy-drift prediction with its measured change for one arm."""

    arm: str
    prediction: str
    points: int
    correlation: float
    sign_agreement: float


DRIFT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("next batch, AEM proxy", "drift/predicted_previous", "drift/measured_change"),
    ("same batch, token-level", "drift/same_batch_token_prediction", "drift/same_batch_measured"),
    ("same batch, AEM proxy", "drift/total", "drift/same_batch_measured"),
)
"""``(name, predicted key, measured key)``: the AEM proxy of Eq. 16-17 against the change of
mean response entropy to the next iteration's rollouts (always logged), and with
``analysis.same_batch_drift`` the token-level prediction of Theorem 3.2.2 and the AEM proxy
against the change the update caused on its own batch."""


def drift_points(
    runs: list[RunResult],
    predicted_key: str = "drift/predicted_previous",
    measured_key: str = "drift/measured_change",
) -> tuple[list[float], list[float]]:
    """(predicted, measured) pairs over all runs' iterations that logged both."""
    predicted, measured = [], []
    for run in runs:
        for record in run.records:
            p, m = record.get(predicted_key), record.get(measured_key)
            if p is not None and m is not None:
                predicted.append(float(p))
                measured.append(float(m))
    return predicted, measured


def _sign_agreement(x: list[float], y: list[float]) -> float:
    """Fraction of iterations with a non-zero prediction whose measured change has its sign."""
    signed = [(a, b) for a, b in zip(x, y, strict=True) if a != 0.0]
    if not signed:
        return math.nan
    return sum((a > 0) == (b > 0) for a, b in signed) / len(signed)


def _pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 3 or statistics.pvariance(x) == 0 or statistics.pvariance(y) == 0:
        return math.nan
    return float(np.corrcoef(np.array(x), np.array(y))[0, 1])


def figure_drift(
    results: list[RunResult],
    algos: list[str],
    path: str | Path,
    modulations: tuple[str, ...] = ("aem",),
) -> tuple[Path | None, list[DriftFit]]:
    """Scatter of measured vs predicted entropy change per iteration, one row of panels per
    prediction of :data:`DRIFT_PAIRS` that was logged, with Pearson r and sign agreement per
    arm over iterations and seeds (the predictions are for a unit step, so no y = x line)."""
    arms = by_arm([r for r in results if not r.spec.analysis])
    panels: dict[tuple[str, str], list] = {}
    fits = []
    for prediction, predicted_key, measured_key in DRIFT_PAIRS:
        for algo in algos:
            for modulation, colour, _, marker in arm_styles(modulations):
                runs = arms.get(arm_name(algo, modulation), [])
                x, y = drift_points(runs, predicted_key, measured_key)
                if not x:
                    continue
                label = arm_label(algo, modulation)
                fit = DriftFit(label, prediction, len(x), _pearson(x, y), _sign_agreement(x, y))
                fits.append(fit)
                panels.setdefault((prediction, algo), []).append((fit, x, y, colour, marker))
    if not panels:
        return None, fits
    plt = _pyplot()
    kinds = list(dict.fromkeys(kind for kind, _ in panels))
    fig, axes = plt.subplots(
        len(kinds),
        len(algos),
        figsize=(5.5 * len(algos), 4.6 * len(kinds)),
        squeeze=False,
        constrained_layout=True,
    )
    for row, kind in enumerate(kinds):
        for column, algo in enumerate(algos):
            axis = axes[row][column]
            for fit, x, y, colour, marker in panels.get((kind, algo), []):
                r = "n/a" if math.isnan(fit.correlation) else f"{fit.correlation:.2f}"
                agree = (
                    "n/a" if math.isnan(fit.sign_agreement) else f"{100 * fit.sign_agreement:.0f}%"
                )
                label = f"{fit.arm}: r={r}, same sign {agree}"
                axis.scatter(x, y, color=colour, marker=marker, alpha=0.7, label=label)
            axis.axhline(0.0, color="#555555", linewidth=0.8)
            axis.axvline(0.0, color="#555555", linewidth=0.8)
            measured = "its own batch" if kind.startswith("same") else "t -> t+1"
            axis.set(
                title=f"{algo.upper()}: {kind}",
                xlabel="predicted drift (unit step)",
                ylabel=f"measured change of mean entropy, {measured}",
            )
            axis.grid(alpha=0.3)
            if axis.has_data():
                axis.legend(fontsize=8)
    fig.suptitle(
        "Entropy drift: first-order predictions vs measured change\n"
        "(the predictions are for a unit step: compare signs and trends, not magnitudes)",
        fontsize=10,
    )
    return _save(fig, Path(path)), fits
