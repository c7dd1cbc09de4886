"""The lab's report: ``report.md``, PNG figures (matplotlib, Agg), ``curves.csv``,
``summary.csv`` and ``results.json`` in one directory, plus the replication check of a disjoint
seed set against an earlier ``results.json``."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

from aem.lab.experiment import Records
from aem.lab.settings import Setting
from aem.lab.stats import mean_band
from aem.lab.summary import DRIFT_PAIRS, summarize_drift, summarize_main, trajectories

SCATTER_POINTS = 1500  # per arm and panel (the statistics use every point)
COLOURS = {
    "grpo": "#000000",
    "aem@0.5": "#F0A57A",
    "aem@1": "#D55E00",
    "aem@2": "#8C2D04",
    "mask_decreasing": "#E69F00",
    "mask_increasing": "#56B4E9",
    "empg": "#009E73",
}
LABELS = {
    "grpo": "GRPO",
    "mask_decreasing": "GRPO, entropy-decreasing quadrants masked",
    "mask_increasing": "GRPO, entropy-increasing quadrants masked",
    "empg": "GRPO+EMPG",
}
PAIR_LABELS = {
    "predicted_token~measured_token": "token prediction vs token entropy on the same tokens",
    "predicted_token~measured_response": "token prediction vs response entropy on the same states",
    "predicted_response~measured_response": (
        "exact response prediction (Thm 3.2.2) vs response entropy"
    ),
    "predicted_aem~measured_response": "AEM proxy vs response entropy",
}


def _label(arm: str) -> str:
    return LABELS.get(arm, f"GRPO+AEM tau={arm[4:]}" if arm.startswith("aem@") else arm)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(entry: dict, digits: int = 3) -> str:
    if entry["n"] == 0 or math.isnan(entry["mean"]):
        return "n/a"
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def _plot_bands(axis, x, records: Records, values, arms, ylabel: str) -> None:
    for arm in arms:
        a = records.arms.index(arm)
        mean, low, high = (v.numpy() for v in mean_band(values[a]))
        colour = COLOURS.get(arm)
        axis.plot(x, mean, color=colour, label=_label(arm), linewidth=1.6)
        axis.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)


def _curve_figures(out: Path, name: str, records: Records, setting: Setting) -> list[str]:
    plt = _pyplot()
    x = trajectories(records, setting).numpy()
    xlabel = "sampled trajectories per run"
    files = []
    figure, axis = plt.subplots(figsize=(7, 4.2))
    _plot_bands(axis, x, records, records.success, records.arms, "exact success probability")
    axis.set_xlabel(xlabel)
    axis.set_title(f"{name}: success (mean and 95% CI over {records.seeds.numel()} seeds)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / f"success_{name}.png", dpi=120)
    plt.close(figure)
    files.append(f"success_{name}.png")

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    transition = [arm for arm in records.arms if arm == "grpo" or arm.startswith("aem@")]
    _plot_bands(left, x, records, records.entropy, transition, "exact response entropy (nats)")
    left.set_title("GRPO vs GRPO+AEM (Fig. 3 analogue)")
    masks = [a for a in ("mask_decreasing", "grpo", "mask_increasing") if a in records.arms]
    _plot_bands(right, x, records, records.entropy, masks, "")
    right.set_title("Analysis A masks (Fig. 2 analogue)")
    for axis in (left, right):
        axis.set_xlabel(xlabel)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / f"entropy_{name}.png", dpi=120)
    plt.close(figure)
    files.append(f"entropy_{name}.png")
    return files


def _drift_figure(out: Path, policy: str, drift: dict[str, Records]) -> str:
    plt = _pyplot()
    rules = [name for name in drift if name.startswith(f"{policy}/")]
    pairs = DRIFT_PAIRS
    figure, axes = plt.subplots(
        len(rules), len(pairs), figsize=(3.2 * len(pairs), 2.6 * len(rules)), squeeze=False
    )
    for row, name in enumerate(rules):
        records = drift[name]
        for column, (predicted, measured) in enumerate(pairs):
            axis = axes[row][column]
            for a, arm in enumerate(records.arms):
                p = records.drift[predicted][a].flatten()[:SCATTER_POINTS].numpy()
                m = records.drift[measured][a].flatten()[:SCATTER_POINTS].numpy()
                axis.scatter(
                    p, m, s=2, alpha=0.3, color=COLOURS.get(arm), label=_label(arm), rasterized=True
                )
            axis.axhline(0, color="grey", linewidth=0.5)
            axis.axvline(0, color="grey", linewidth=0.5)
            if row == 0:
                axis.set_title(PAIR_LABELS[f"{predicted}~{measured}"], fontsize=7)
            if column == 0:
                axis.set_ylabel(f"{name.split('/', 1)[1]}\nmeasured", fontsize=8)
            axis.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6, markerscale=4)
    figure.suptitle(f"same-batch entropy drift, {policy} policy (x: prediction)", fontsize=10)
    figure.tight_layout()
    file = f"drift_{policy}.png"
    figure.savefig(out / file, dpi=80)
    plt.close(figure)
    return file


def _headline_figure(out: Path, main: dict[str, Records], plan: dict[str, Setting]) -> str:
    plt = _pyplot()
    shown = [name for name in ("lock-tabular-adam", "keydoor-tabular-adam") if name in main]
    shown = shown or list(main)[:1]
    figure, axes = plt.subplots(2, len(shown), figsize=(5.5 * len(shown), 7), squeeze=False)
    for column, name in enumerate(shown):
        records, setting = main[name], plan[name]
        x = trajectories(records, setting).numpy()
        arms = [a for a in ("grpo", "aem@1", "empg") if a in records.arms]
        _plot_bands(axes[0][column], x, records, records.success, arms, "exact success")
        _plot_bands(axes[1][column], x, records, records.entropy, arms, "response entropy (nats)")
        axes[0][column].set_title(f"{name} ({records.seeds.numel()} seeds, 95% CI)")
        axes[1][column].set_xlabel("sampled trajectories per run")
        axes[0][column].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "headline.png", dpi=120)
    plt.close(figure)
    return "headline.png"


def conclusions(summary: dict) -> dict[str, str]:
    """Verdicts ("+", "-", "0" for a 95% interval above, below or across 0; "yes"/"no") of the
    claims the replication check compares."""
    verdicts = {}
    for name, main in summary["main"].items():
        for arm, row in main["arms"].items():
            for metric in ("auc", "final", "entropy_early", "entropy_late"):
                if "paired" in row:
                    entry = row["paired"][metric]
                    verdict = "+" if entry["low"] > 0 else "-" if entry["high"] < 0 else "0"
                    verdicts[f"{name}: {arm} - grpo, {metric}"] = verdict
        for arm, share in main["transition"].items():
            verdicts[f"{name}: {arm} transition in most seeds"] = (
                "yes" if share["share"] > 0.5 else "no"
            )
        if main["masks"]:
            entry = main["masks"]["decreasing_minus_increasing_early"]
            verdicts[f"{name}: mask_decreasing - mask_increasing, entropy_early"] = (
                "+" if entry["low"] > 0 else "-" if entry["high"] < 0 else "0"
            )
            verdicts[f"{name}: masks ordered in most seeds"] = (
                "yes" if main["masks"]["ordered_share"] > 0.5 else "no"
            )
    for name, pairs in summary["drift"].items():
        for pair, entry in pairs.items():
            verdicts[f"drift {name}: {pair} sign >= 0.95"] = (
                "yes" if entry["sign"] >= 0.95 else "no"
            )
    return verdicts


def replication(current: dict[str, str], earlier: dict[str, str]) -> tuple[list, list]:
    """Claims whose verdicts agree and those that differ between two seed sets."""
    shared = [claim for claim in current if claim in earlier]
    agree = [claim for claim in shared if current[claim] == earlier[claim]]
    differ = [(claim, earlier[claim], current[claim]) for claim in shared if claim not in agree]
    return agree, differ


def write_report(
    out: Path,
    main: dict[str, Records],
    drift: dict[str, Records],
    plan: dict[str, Setting],
    drift_plan: dict[str, Setting],
    meta: dict,
    check_against: Path | None = None,
) -> dict:
    """Write everything to ``out``; return the results dict (also ``results.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "meta": meta,
        "settings": {name: _setting_dict(plan[name]) for name in main},
        "drift_settings": {name: _setting_dict(drift_plan[name]) for name in drift},
        "main": {name: summarize_main(main[name], plan[name]) for name in main},
        "drift": {name: summarize_drift(records) for name, records in drift.items()},
    }
    summary["conclusions"] = conclusions(summary)
    if check_against is not None:
        earlier = json.loads((check_against / "results.json").read_text())
        agree, differ = replication(summary["conclusions"], earlier["conclusions"])
        summary["replication"] = {
            "against": str(check_against),
            "earlier_seeds": earlier["meta"]["seeds"],
            "agree": agree,
            "differ": differ,
        }
    figures = {}
    for name, records in main.items():
        figures[name] = _curve_figures(out, name, records, plan[name])
    policies = sorted({name.split("/", 1)[0] for name in drift})
    drift_figures = [_drift_figure(out, policy, drift) for policy in policies]
    headline = _headline_figure(out, main, plan) if main else None
    _write_csv(out, main, plan, summary)
    (out / "results.json").write_text(_json(summary))
    (out / "report.md").write_text(_markdown(summary, figures, drift_figures, headline, main, plan))
    return summary


def _setting_dict(setting: Setting) -> dict:
    data = asdict(setting)
    data["arms"] = list(setting.arms)
    return data


def _json(data) -> str:
    """Strict JSON: NaN (an empty interval, a share over no update) becomes null."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    return json.dumps(clean(data), indent=1, allow_nan=False) + "\n"


def _write_csv(out: Path, main: dict[str, Records], plan: dict[str, Setting], summary) -> None:
    with (out / "curves.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["setting", "arm", "step", "trajectories", "metric", "mean", "low95", "high95"]
        )
        for name, records in main.items():
            x = trajectories(records, plan[name])
            for metric, values in (("success", records.success), ("entropy", records.entropy)):
                for a, arm in enumerate(records.arms):
                    mean, low, high = mean_band(values[a])
                    for e, step in enumerate(records.eval_steps.tolist()):
                        writer.writerow(
                            [name, arm, step, int(x[e]), metric]
                            + [f"{float(v[e]):.6f}" for v in (mean, low, high)]
                        )
    with (out / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                *("setting", "arm", "metric", "mean", "low95", "high95"),
                *("diff_vs_grpo", "diff_low95", "diff_high95", "diff_mde80", "seeds"),
            ]
        )
        for name, main_summary in summary["main"].items():
            for arm, row in main_summary["arms"].items():
                for metric in ("final", "auc", "entropy_early", "entropy_late"):
                    entry = row[metric]
                    paired = row.get("paired", {}).get(metric)
                    diff = (
                        [paired[k] for k in ("mean", "low", "high", "mde")]
                        if paired
                        else ["", "", "", ""]
                    )
                    writer.writerow(
                        [name, arm, metric]
                        + [entry[k] for k in ("mean", "low", "high")]
                        + diff
                        + [entry["n"]]
                    )


def _markdown(summary, figures, drift_figures, headline, main, plan) -> str:
    meta = summary["meta"]
    lines = [
        "# aem lab: the paper's mechanism on small exact policies",
        "",
        f"Command: `{meta['command']}`  ",
        f"Seeds {meta['seeds'][0]}..{meta['seeds'][1]} ({meta['num_seeds']} per arm); "
        f"wall time {meta['wall_seconds']:.0f} s, CPU time {meta['cpu_seconds']:.0f} s "
        f"({meta['threads']} torch thread(s), {meta['machine']}).",
        "",
        "Everything below is measured by that one command; the setting was fixed (and each "
        "learning rate tuned on GRPO alone, seeds 10000-10099) before any arm was compared: see "
        "`README.md` in this directory. Intervals are 95% Student-t intervals over seeds; "
        "differences are paired by seed (the arms of a seed share the task pool, the initial "
        "policy and their random numbers); MDE = the smallest true paired difference a "
        "two-sided 5% test detects with 80% power at the observed spread.",
        "",
    ]
    if headline:
        lines += [f"![headline]({headline})", ""]
    for name, main_summary in summary["main"].items():
        setting = summary["settings"][name]
        family = setting["family"]
        lines += [
            f"## {name}",
            "",
            f"Family `{family['name']}` (depth {family['depth']}, decoys {family['decoys']}"
            + (f", safe moves {family['safe_moves']}" if family["name"] == "keydoor" else "")
            + f"), {setting['policy']} policy, update `{setting['update']}` lr {setting['lr']}"
            + (" (trust region)" if setting["trust_region"] else "")
            + f", {setting['steps']} updates of {setting['groups']} groups x "
            f"{setting['group_size']} trajectories, {setting['instances']} instances per seed.",
            "",
            "| arm | final success | AUC | final - GRPO (MDE) | AUC - GRPO (MDE) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for arm, row in main_summary["arms"].items():
            paired = row.get("paired")
            diffs = (
                [f"{_fmt(paired[m], 4)} ({paired[m]['mde']:.4f})" for m in ("final", "auc")]
                if paired
                else ["-", "-"]
            )
            lines.append(
                f"| {_label(arm)} | {_fmt(row['final'])} | {_fmt(row['auc'])} | "
                + " | ".join(diffs)
                + " |"
            )
        lines += ["", *(f"![{file}]({file})" for file in figures[name]), ""]
        lines += [
            "Entropy (exact response entropy, visitation-weighted over the task pool) early "
            "(updates (0, 20%]) and late ([80%, 100%]); transition = share of seeds above GRPO "
            "early and below it late; positive share = positive among the non-zero GRPO "
            "advantages of the batches in those windows:",
            "",
            "| arm | early | late | early - GRPO | late - GRPO | transition share "
            "| positive share early / late |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for arm, row in main_summary["arms"].items():
            paired = row.get("paired")
            share = main_summary["transition"].get(arm)
            cells = [_label(arm), _fmt(row["entropy_early"]), _fmt(row["entropy_late"])]
            cells += (
                [_fmt(paired["entropy_early"], 4), _fmt(paired["entropy_late"], 4)]
                if paired
                else ["-", "-"]
            )
            cells.append(f"{share['share']:.2f}" if share else "-")
            cells.append(
                f"{row['positive_share_early']['mean']:.2f} / "
                f"{row['positive_share_late']['mean']:.2f}"
            )
            lines.append("| " + " | ".join(cells) + " |")
        masks = main_summary["masks"]
        if masks:
            change = masks["change_early"]
            lines += [
                "",
                "Analysis A: entropy change from the start to the early window: "
                f"entropy-decreasing quadrants masked {_fmt(change['mask_decreasing'])}, "
                f"GRPO {_fmt(change['grpo'])}, entropy-increasing quadrants masked "
                f"{_fmt(change['mask_increasing'])}. Early entropy, entropy-decreasing masked "
                "minus entropy-increasing masked (paired): "
                f"{_fmt(masks['decreasing_minus_increasing_early'], 4)}, above in "
                f"{masks['decreasing_above_increasing_share']:.2f} of seeds; seeds in the full "
                "order masked-decreasing > GRPO > masked-increasing: "
                f"{masks['ordered_share']:.2f}.",
            ]
        lines.append("")
    if summary["drift"]:
        lines += [
            "## Same-batch entropy drift",
            "",
            "After each update, the measured change of the exact entropy on the batch's own "
            "states (response entropy) or tokens (token entropy of each sampled context), next "
            "to predictions from the batch before the update (`aem.lab.drift`). Pooled over 30 "
            "updates x seeds x arms (GRPO, GRPO+AEM tau=1) on the lock family; sign agreement "
            "counts updates where both are non-zero.",
            "",
            "| policy / update (lr) | "
            + " | ".join(PAIR_LABELS[f"{p}~{m}"] for p, m in DRIFT_PAIRS)
            + " |",
            "| --- | " + " | ".join("---" for _ in DRIFT_PAIRS) + " |",
        ]
        for name, pairs in summary["drift"].items():
            lr = summary["drift_settings"][name]["lr"]
            cells = [
                f"r={pairs[f'{p}~{m}']['r']:.2f}, sign {pairs[f'{p}~{m}']['sign']:.3f}"
                for p, m in DRIFT_PAIRS
            ]
            lines.append(f"| {name} ({lr:g}) | " + " | ".join(cells) + " |")
        lines += ["", *(f"![{file}]({file})" for file in drift_figures), ""]
    lines += [
        "## Conclusions checked for replication",
        "",
        "Verdicts: + / - = 95% interval of the paired difference above / below 0, 0 = across 0.",
        "",
        "<details><summary>all verdicts</summary>",
        "",
    ]
    lines += [f"- {claim}: **{verdict}**" for claim, verdict in summary["conclusions"].items()]
    lines += ["", "</details>"]
    if "replication" in summary:
        rep = summary["replication"]
        lines += [
            "",
            "## Replication on a disjoint seed set",
            "",
            f"Against `{rep['against']}` (seeds {rep['earlier_seeds'][0]}.."
            f"{rep['earlier_seeds'][1]}): {len(rep['agree'])} of "
            f"{len(rep['agree']) + len(rep['differ'])} verdicts agree.",
        ]
        if rep["differ"]:
            lines += ["", "Verdicts that differ (earlier -> this seed set):", ""]
            lines += [f"- {claim}: {old} -> {new}" for claim, old, new in rep["differ"]]
    lines.append("")
    return "\n".join(lines)


def write_sensitivity(out: Path, summaries: dict, plan: dict[str, Setting], meta: dict) -> dict:
    """``sensitivity.md`` and ``sensitivity.json``: every arm against GRPO per variant."""
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "meta": meta,
        "settings": {name: _setting_dict(setting) for name, setting in plan.items()},
        "summaries": summaries,
    }
    (out / "sensitivity.json").write_text(_json(result))
    lines = [
        "# aem lab: sensitivity over depth, decoys and tau",
        "",
        f"Command: `{meta['command']}`  ",
        f"Seeds {meta['seeds'][0]}..{meta['seeds'][1]} ({meta['num_seeds']} per arm); wall "
        f"time {meta['wall_seconds']:.0f} s, CPU time {meta['cpu_seconds']:.0f} s. One knob "
        "moved at a time from the pre-registered lock settings; learning rates not re-tuned. "
        "Differences are paired by seed with 95% t intervals.",
        "",
        "| variant | GRPO AUC | arm | AUC - GRPO | final - GRPO | entropy early - GRPO "
        "| entropy late - GRPO |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, summary in summaries.items():
        grpo = summary["arms"]["grpo"]["auc"]
        for arm, row in summary["arms"].items():
            if "paired" not in row:
                continue
            paired = row["paired"]
            lines.append(
                f"| {name} | {grpo['mean']:.3f} | {_label(arm)} | "
                + " | ".join(
                    _fmt(paired[m], 4) for m in ("auc", "final", "entropy_early", "entropy_late")
                )
                + " |"
            )
    (out / "sensitivity.md").write_text("\n".join(lines) + "\n")
    return result
