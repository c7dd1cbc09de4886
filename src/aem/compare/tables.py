"""Table 1: final eval success per held-out split, task type and overall, base vs base+modulation
(AEM, EMPG, ...), mean ± std over the seeds where both finished, and the paired difference
(modulated - base) with its 95% t interval and the minimum effect the seeds could detect (80%
power)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aem.compare.results import RunResult
from aem.compare.settings import BASE, arm_label
from aem.stats import PairedDifference, mean_std, paired_difference

CSV_COLUMNS = (
    "split",
    "algo",
    "modulation",
    "task_type",
    "n_seeds",
    "base_mean",
    "base_std",
    "arm_mean",
    "arm_std",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "diff_mde",
    "significant",
    "verdict",
)


@dataclass(frozen=True)
class Table1Row:
    """One split x algorithm x modulation x task type over the seeds where the base and the
    modulated arm both finished; fractions in [0, 1]."""

    split: str
    algo: str
    modulation: str
    task_type: str
    n_seeds: int
    base_mean: float
    base_std: float
    arm_mean: float
    arm_std: float
    diff: PairedDifference | None


def _summary(values: list[float]) -> tuple[float, float]:
    return mean_std(values) if values else (math.nan, math.nan)


def table1(
    results: list[RunResult],
    algos: Sequence[str],
    splits: Sequence[tuple[str, str | None]] = (("eval", None),),
    modulations: Sequence[str] = ("aem",),
) -> list[Table1Row]:
    """Rows for each split (``(name, key)`` as :func:`~aem.compare.results.evaluated_splits`
    gives), algorithm and modulation: task types in alphabetical order, then ``overall``.

    Only seeds where both the base and the modulated arm finished count (so the difference of
    the means is the mean paired difference); unfinished runs are left out."""
    rows = []
    for split, key in splits:
        for algo in algos:
            finals = {
                modulation: {
                    r.spec.seed: r.final_success(key)
                    for r in results
                    if not r.spec.analysis
                    and r.spec.algo == algo
                    and r.spec.modulation == modulation
                    and r.finished
                }
                for modulation in (BASE, *modulations)
            }
            types = sorted(
                {t for arm in finals.values() for s in arm.values() for t in s} - {"overall"}
            )
            for modulation in modulations:
                base_finals, arm_finals = finals[BASE], finals[modulation]
                for task_type in [*types, "overall"]:
                    seeds = sorted(
                        seed
                        for seed in set(base_finals) & set(arm_finals)
                        if task_type in base_finals[seed] and task_type in arm_finals[seed]
                    )
                    base = [base_finals[seed][task_type] for seed in seeds]
                    arm = [arm_finals[seed][task_type] for seed in seeds]
                    diff = paired_difference(arm, base) if seeds else None
                    summaries = (*_summary(base), *_summary(arm))
                    rows.append(
                        Table1Row(split, algo, modulation, task_type, len(seeds), *summaries, diff)
                    )
    return rows


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def write_csv(rows: list[Table1Row], path: str | Path) -> Path:
    """Fractions at full precision; empty cells where undefined (e.g. std of one seed)."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            d = row.diff
            writer.writerow(
                [
                    row.split,
                    row.algo,
                    row.modulation,
                    row.task_type,
                    row.n_seeds,
                    _csv_number(row.base_mean),
                    _csv_number(row.base_std),
                    _csv_number(row.arm_mean),
                    _csv_number(row.arm_std),
                    _csv_number(d.mean) if d else "",
                    _csv_number(d.low) if d else "",
                    _csv_number(d.high) if d else "",
                    _csv_number(d.mde) if d else "",
                    str(d.significant).lower() if d else "",
                    d.verdict() if d else "no paired seeds",
                ]
            )
    return path


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def _mean_std_cell(mean: float, std: float) -> str:
    return _pct(mean) if math.isnan(std) else f"{_pct(mean)} ± {_pct(std)}"


def _diff_cell(diff: PairedDifference | None) -> str:
    if diff is None:
        return "n/a"
    sign = "+" if diff.mean >= 0 else ""
    if diff.n < 2:
        return f"{sign}{_pct(diff.mean)}"
    return f"{sign}{_pct(diff.mean)} [{_pct(diff.low)}, {_pct(diff.high)}]"


def markdown(rows: list[Table1Row]) -> str:
    """One Markdown table; success in percent, mean ± sample std over seeds; MDE = the smallest
    paired difference the seeds detect with 80% power at the observed spread."""
    lines = [
        "| split | base | arm | task type | seeds | base success | arm success "
        "| Δ arm - base, pp [95% CI] | MDE, pp | reading |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        d = row.diff
        lines.append(
            f"| {row.split} | {arm_label(row.algo, BASE)} | {arm_label(row.algo, row.modulation)} "
            f"| {row.task_type} | {row.n_seeds} "
            f"| {_mean_std_cell(row.base_mean, row.base_std)} "
            f"| {_mean_std_cell(row.arm_mean, row.arm_std)} "
            f"| {_diff_cell(d)} | {_pct(d.mde) if d else 'n/a'} "
            f"| {d.verdict() if d else 'no paired seeds'} |"
        )
    return "\n".join(lines) + "\n"


def write_markdown(rows: list[Table1Row], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(markdown(rows))
    return path
