"""``SWEEP/report/``: Table 1 (Markdown + CSV), the figures, and ``report.md`` tying them together
with the exact command and resolved config that produced them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from aem.compare.figures import (
    DriftFit,
    Latency,
    figure2_analysis,
    figure3_curves,
    figure3_overlay,
    figure4_latency,
    figure_drift,
    latencies,
)
from aem.compare.results import RunResult, evaluated_splits, load_results
from aem.compare.settings import BASE, SweepSettings, arm_label, read_sweep_file
from aem.compare.tables import Table1Row, markdown, table1, write_csv, write_markdown

REPORT_DIR = "report"
FILES = {
    "table_md": "table1.md",
    "table_csv": "table1.csv",
    "fig3": "fig3_entropy_success.png",
    "fig3_overlay": "fig3_overlay.png",
    "fig2": "fig2_analysis_a.png",
    "fig4": "fig4_latency.png",
    "drift": "entropy_drift.png",
    "report": "report.md",
}


@dataclass(frozen=True)
class Report:
    """Paths of what :func:`write_report` produced (figures absent when there was no data)."""

    directory: Path
    files: dict[str, Path]
    rows: list[Table1Row]


def write_report(sweep_dir: str | Path) -> Report:
    """(Re)generate ``SWEEP/report/`` from the runs on disk; unfinished runs are listed, not used
    in Table 1."""
    sweep_dir = Path(sweep_dir).resolve()
    settings, document = read_sweep_file(sweep_dir)
    results = load_results(settings, sweep_dir)
    out = sweep_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    algos = list(settings.algos)
    files: dict[str, Path] = {}
    splits = evaluated_splits(settings.env, document.get("resolved_config", {}))
    modulations = settings.modulations
    rows = table1(results, algos, splits, modulations)
    files["table_md"] = write_markdown(rows, out / FILES["table_md"])
    files["table_csv"] = write_csv(rows, out / FILES["table_csv"])
    files["fig3"] = figure3_curves(results, algos, out / FILES["fig3"], modulations)
    seed = figure3_overlay(results, algos[0], out / FILES["fig3_overlay"], modulations[0])
    if seed is not None:
        files["fig3_overlay"] = out / FILES["fig3_overlay"]
    fig2 = figure2_analysis(results, out / FILES["fig2"])
    if fig2 is not None:
        files["fig2"] = fig2
    latency = latencies(results, algos, modulations)
    fig4 = figure4_latency(latency, out / FILES["fig4"])
    if fig4 is not None:
        files["fig4"] = fig4
    drift_path, fits = figure_drift(results, algos, out / FILES["drift"], modulations)
    if drift_path is not None:
        files["drift"] = drift_path
    text = _report_text(settings, document, sweep_dir, results, rows, seed, latency, fits, files)
    files["report"] = out / FILES["report"]
    files["report"].write_text(text)
    return Report(out, files, rows)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


MDE_TARGET = 0.05
"""The sweep is powered as intended when it could detect a 5-point paired effect (80% power)."""


def _findings(rows: list[Table1Row], seeds: int) -> list[str]:
    lines = []
    for row in rows:
        if row.task_type != "overall":
            continue
        base = f"{arm_label(row.algo, BASE)} on {row.split}"
        aem = arm_label(row.algo, row.modulation)
        d = row.diff
        if d is None:
            lines.append(f"- {aem} vs {base}: no seed has both runs finished yet.")
            continue
        if d.n < 2:
            lines.append(
                f"- {aem} vs {base}: {_pct(d.mean)} pp on a single paired seed; "
                "no confidence interval is possible."
            )
            continue
        lines.append(
            f"- {aem} vs {base}: overall success {_pct(row.arm_mean)}% vs {_pct(row.base_mean)}%, "
            f"paired difference {_pct(d.mean)} pp, 95% CI [{_pct(d.low)}, {_pct(d.high)}] over "
            f"{d.n} seeds: **{d.verdict()}**. Minimum detectable paired effect (80% power, "
            f"two-sided 5%): {_pct(d.mde)} pp, "
            + ("within" if d.mde <= MDE_TARGET else "**above**")
            + f" the {_pct(MDE_TARGET)}-point target."
        )
    if seeds < 5:
        lines.append(
            f"- With {seeds} seed(s) the t interval is wide; read the differences as indicative."
        )
    return lines


def _start_check(results: list[RunResult]) -> str:
    """Do all runs of a seed evaluate the same starting policy identically (the pairing)?"""
    per_seed: dict[int, set[float]] = {}
    for result in results:
        start = result.start_eval
        if start is not None and start.get("eval/success") is not None:
            per_seed.setdefault(result.spec.seed, set()).add(round(start["eval/success"], 12))
    if not per_seed:
        return "No run has evaluated its starting policy yet."
    parts = [
        f"seed {seed}: {', '.join(_pct(v) + '%' for v in sorted(values))}"
        for seed, values in sorted(per_seed.items())
    ]
    same = all(len(values) == 1 for values in per_seed.values())
    verdict = (
        "identical within every seed, as pairing requires"
        if same
        else "NOT identical within a seed: the pairs do not share their start"
    )
    return f"Eval success of the starting policy (iteration -1): {'; '.join(parts)} ({verdict})."


def _image(files: dict[str, Path], key: str, caption: str) -> list[str]:
    if key not in files:
        return [f"*{caption}: no data yet.*", ""]
    return [f"![{caption}]({files[key].name})", "", f"*{caption}*", ""]


def _report_text(
    settings: SweepSettings,
    document: dict,
    sweep_dir: Path,
    results: list[RunResult],
    rows: list[Table1Row],
    overlay_seed: int | None,
    latency: list[Latency],
    fits: list[DriftFit],
    files: dict[str, Path],
) -> str:
    config = document.get("resolved_config", {})
    evaluation = config.get("eval", {})
    finished = [r for r in results if r.finished]
    unfinished = [r.spec.name for r in results if not r.finished]
    lines = [
        f"# AEM comparison on `{settings.env}`: "
        f"{', '.join(a.upper() for a in settings.algos)} without and with "
        f"{', '.join(m.upper() for m in settings.modulations)}",
        "",
        "Produced by:",
        "",
        "```bash",
        document.get("command", settings.command(sweep_dir)),
        "```",
        "",
        f"Sweep directory: `{sweep_dir}`. Rerun the same command to continue an interrupted sweep "
        f"(finished runs are reused); `aem compare --report-only {sweep_dir}` regenerates this "
        "report.",
        "",
        f"Runs finished: {len(finished)} of {len(results)}."
        + (
            f" Not finished (left out of the table): {', '.join(unfinished)}." if unfinished else ""
        ),
        "",
        "Every run of a seed starts from the same policy (`init/seed<k>`, built once: tokenizer, "
        "model and warm start from that seed), so the arms of a seed differ only by the "
        "modulation of the advantages. " + _start_check(results),
        "",
        "## Table 1: success rate (%)",
        "",
        f"Final evaluation success on {evaluation.get('tasks', '?')} held-out tasks of each split "
        f"at temperature {evaluation.get('temperature', '?')}, per task type and overall, mean ± "
        "sample std (n-1) over the seeds where both arms finished. Δ is the paired difference "
        "arm - base over those seeds in percentage points, with a 95% paired-t confidence "
        "interval; MDE is the smallest paired difference a two-sided 5% test over those seeds "
        "detects with 80% power at the observed spread ((t_0.975 + t_0.8) · sd / √n, "
        "`aem.stats.minimum_detectable_effect`); 'not significant' means the interval "
        f"contains 0. CSV (fractions, full precision): `{FILES['table_csv']}`.",
        "",
        markdown(rows),
        *_findings(rows, settings.seeds),
        "",
        "## Figure 3: entropy and success during training",
        "",
        *_image(
            files,
            "fig3",
            "Mean response entropy and training (rollout) success per iteration; "
            "line = mean over seeds, band = ± 1 std",
        ),
        *_image(
            files,
            "fig3_overlay",
            f"Entropy (solid) with success (dotted) for {settings.algos[0].upper()}, "
            f"seed {overlay_seed} (the base / {settings.modulations[0].upper()} pair with the "
            "median final difference)",
        ),
        "## Figure 2: Analysis A (quadrant masks)",
        "",
    ]
    if settings.analysis_iterations:
        lines += _image(
            files,
            "fig2",
            f"{settings.algos[0].upper()} without AEM for {settings.analysis_iterations} "
            "iterations with the loss of the entropy-decreasing or -increasing quadrants "
            "zeroed (`analysis.mask_quadrant`), and unmasked",
        )
    else:
        lines += ["*Skipped (`--no-analysis`).*", ""]
    lines += [
        "## Figure 4: latency breakdown",
        "",
        *_image(files, "fig4", "Seconds per training iteration by phase"),
        "| arm | s / iteration | AEM s / iteration | AEM share |",
        "|---|---|---|---|",
        *(
            f"| {row.arm} | {row.total:.4g} | {row.phases.get('aem', 0.0):.3g} "
            f"| {100 * row.aem_share:.2f}% |"
            for row in latency
        ),
        "",
        "## Entropy drift: predicted vs measured",
        "",
        *_image(
            files,
            "drift",
            "First-order entropy change predicted from iteration t's batch vs its measured "
            "change: next batch = the change of mean response entropy to iteration t+1's "
            "rollouts (other samples); same batch (`analysis.same_batch_drift=true`) = the "
            "change the update caused on its own batch's tokens, against the token-level "
            "prediction mean A (-log p - H) and the AEM proxy mean w A (h - mean_G h)",
        ),
        "Pearson r and sign agreement over all iterations and seeds of each arm.",
        "",
        "| arm | prediction | points | Pearson r | same sign |",
        "|---|---|---|---|---|",
        *(
            f"| {fit.arm} | {fit.prediction} | {fit.points} | "
            f"{'n/a' if math.isnan(fit.correlation) else f'{fit.correlation:.2f}'} "
            f"| {_pct(fit.sign_agreement)}% |"
            for fit in fits
        ),
        "",
        "## Resolved config",
        "",
        "Shared by every run; each run then sets `seed`, `algorithm`, `aem.enabled` (or "
        "`modulation`), "
        "`model.path=init/seed<k>`, `warm_start.enabled=off` and `output_dir` "
        "(Analysis A runs also `trainer.iterations`, `eval.every=0`, `analysis.mask_quadrant`); "
        "each run's own `config.yaml` holds its full settings.",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
