"""Training curves of one run: success and mean response entropy per iteration, as a PNG."""

from __future__ import annotations

from pathlib import Path

from aem.trainer.metrics import read_metrics

CURVES_FILE = "curves.png"


def curve_points(records: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """``{name: (iterations, values)}`` for ``rollout``, ``eval`` and ``entropy``. The evaluation
    of the starting policy (logged at iteration -1) opens the eval curve, so the plot shows where
    training started from."""
    trained = [r for r in records if r.get("iteration", -1) >= 0]
    evals = [r for r in records if r.get("eval/success") is not None and "iteration" in r]

    def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
        return [r["iteration"] for r in rows], [r.get(key) for r in rows]

    return {
        "rollout": series(trained, "rollout/success"),
        "eval": series(evals, "eval/success"),
        "entropy": series(trained, "entropy/response_mean"),
    }


def plot_run(run_dir: str | Path) -> Path | None:
    """Write ``RUN_DIR/curves.png`` (success, eval success, response entropy vs iteration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    points = curve_points(read_metrics(run_dir))
    if not points["rollout"][0]:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    left.plot(*points["rollout"], label="rollout", color="#0072B2")
    if points["eval"][0]:
        left.plot(*points["eval"], "o--", label="held-out eval (-1: start)", color="#D55E00")
    left.set(title="Success rate", xlabel="iteration", ylabel="success", ylim=(-0.02, 1.02))
    left.legend()
    right.plot(*points["entropy"], color="#009E73")
    right.set(title="Mean response entropy", xlabel="iteration", ylabel="nats / token")
    path = run_dir / CURVES_FILE
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
