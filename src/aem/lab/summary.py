"""Summaries of the lab's records: the numbers the report prints, as plain dicts.

- ``arms``: per arm, final success and area under the success curve (AUC: trapezoid over the
  number of sampled trajectories, divided by its range = mean success over training), each a mean
  over seeds with a 95% t interval; paired differences arm - GRPO (same seed) with their interval
  and minimum detectable effect at 80% power.
- ``positive_share_{early,late}``: the share of positive among the non-zero GRPO advantages of
  the batches in those windows (the paper's "positives come to dominate").
- ``entropy``: per arm, the mean exact response entropy early (evaluations in (0, 20%] of the
  steps) and late (in [80%, 100%]); paired differences from GRPO.
- ``transition``: per AEM arm, the share of seeds whose entropy is above GRPO's early *and* below
  it late (the paper's exploration-to-exploitation transition, Sec. 4.3 and Fig. 3).
- ``masks``: Analysis A: entropy change from the start to the early window under each mask and
  GRPO, the paired difference mask_decreasing - mask_increasing of the early entropy, and the
  shares of seeds with mask_decreasing above mask_increasing and with the full order
  mask_decreasing > grpo > mask_increasing (Fig. 2).
- ``drift``: per drift setting, Pearson r and sign agreement of each prediction against the
  measured change it predicts (:mod:`aem.lab.drift`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aem.lab.experiment import Records
from aem.lab.settings import Setting
from aem.lab.stats import estimate, pearson, sign_agreement

EARLY, LATE = 0.2, 0.8
DRIFT_PAIRS: tuple[tuple[str, str], ...] = (
    ("predicted_token", "measured_token"),
    ("predicted_token", "measured_response"),
    ("predicted_response", "measured_response"),
    ("predicted_aem", "measured_response"),
)


def trajectories(records: Records, setting: Setting) -> Tensor:
    """``[E]`` sampled trajectories per run at each evaluation."""
    return records.eval_steps.to(torch.float64) * setting.trajectories_per_step


def area_under_curve(records: Records, setting: Setting) -> Tensor:
    """``[A, R]`` normalised area under success vs sampled trajectories."""
    x = trajectories(records, setting)
    return torch.trapezoid(records.success, x, dim=-1) / (x[-1] - x[0])


def _windows(records: Records, setting: Setting) -> tuple[Tensor, Tensor]:
    steps = records.eval_steps.to(torch.float64)
    early = (steps > 0) & (steps <= EARLY * setting.steps)
    late = steps >= LATE * setting.steps
    return early, late


def summarize_main(records: Records, setting: Setting) -> dict:
    """All numbers of one arm comparison (module docstring)."""
    arms = list(records.arms)
    grpo = arms.index("grpo") if "grpo" in arms else None
    final = records.success[:, :, -1]
    area = area_under_curve(records, setting)
    early, late = _windows(records, setting)
    entropy_early = records.entropy[:, :, early].mean(-1)
    entropy_late = records.entropy[:, :, late].mean(-1)
    summary: dict = {"arms": {}, "transition": {}, "masks": {}}
    for a, name in enumerate(arms):
        row = {
            "final": estimate(final[a]).as_dict(),
            "auc": estimate(area[a]).as_dict(),
            "entropy_early": estimate(entropy_early[a]).as_dict(),
            "entropy_late": estimate(entropy_late[a]).as_dict(),
            "positive_share_early": estimate(
                records.positive_share[a, :, : max(1, int(EARLY * setting.steps))].nanmean(-1)
            ).as_dict(),
            "positive_share_late": estimate(
                records.positive_share[a, :, int(LATE * setting.steps) :].nanmean(-1)
            ).as_dict(),
        }
        if grpo is not None and a != grpo:
            row["paired"] = {
                "final": estimate(final[a] - final[grpo]).as_dict(),
                "auc": estimate(area[a] - area[grpo]).as_dict(),
                "entropy_early": estimate(entropy_early[a] - entropy_early[grpo]).as_dict(),
                "entropy_late": estimate(entropy_late[a] - entropy_late[grpo]).as_dict(),
            }
            if name.startswith("aem@"):
                above = entropy_early[a] > entropy_early[grpo]
                below = entropy_late[a] < entropy_late[grpo]
                summary["transition"][name] = {
                    "share": float((above & below).to(torch.float64).mean()),
                    "early_above": float(above.to(torch.float64).mean()),
                    "late_below": float(below.to(torch.float64).mean()),
                }
        summary["arms"][name] = row
    if grpo is not None and {"mask_decreasing", "mask_increasing"} <= set(arms):
        start = records.entropy[:, :, 0]
        change = entropy_early - start
        up, down = arms.index("mask_decreasing"), arms.index("mask_increasing")
        ordered = (entropy_early[up] > entropy_early[grpo]) & (
            entropy_early[grpo] > entropy_early[down]
        )
        summary["masks"] = {
            "change_early": {
                name: estimate(change[arms.index(name)]).as_dict()
                for name in ("mask_decreasing", "grpo", "mask_increasing")
            },
            "decreasing_minus_increasing_early": estimate(
                entropy_early[up] - entropy_early[down]
            ).as_dict(),
            "decreasing_above_increasing_share": float(
                (entropy_early[up] > entropy_early[down]).to(torch.float64).mean()
            ),
            "ordered_share": float(ordered.to(torch.float64).mean()),
        }
    return summary


def summarize_drift(records: Records) -> dict:
    """Pearson r and sign agreement of every prediction/measurement pair, pooled over seeds,
    steps and arms, and per arm."""
    out: dict = {}
    for predicted, measured in DRIFT_PAIRS:
        key = f"{predicted}~{measured}"
        p, m = records.drift[predicted], records.drift[measured]
        agreement, number = sign_agreement(p, m)
        entry = {"r": pearson(p, m), "sign": agreement, "n": number, "per_arm": {}}
        for a, arm in enumerate(records.arms):
            arm_agreement, arm_number = sign_agreement(p[a], m[a])
            entry["per_arm"][arm] = {
                "r": pearson(p[a], m[a]),
                "sign": arm_agreement,
                "n": arm_number,
            }
        out[key] = entry
    return out
