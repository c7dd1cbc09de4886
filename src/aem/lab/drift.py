"""Same-batch entropy drift: after one update, the measured change of the exact entropy on the
batch's own states and tokens, next to what the batch predicted before the update.

Per run, over its played turns j (n of them; A'_j the advantage the update used):

- ``measured_response`` = mean_j [H_new(s_j) - H_old(s_j)], H the exact response entropy (Eq. 4);
- ``measured_token`` = mean over the turns' tokens of the change of the exact token entropy of
  the context each token was sampled in (Eq. 5);
- ``predicted_token`` = mean_j A'_j sum_t (-log p_jt - H_jt): the token-level first-order
  prediction a trainer can compute from its scoring pass;
- ``predicted_response`` = mean_j A'_j (-log pi(y_j | s_j) - H(s_j)): Theorem 3.2.2's drift
  (Eq. 9-11) with the exact response surprisal and entropy;
- ``predicted_aem`` = mean_j A'_j (h_j - mean_G h): the AEM proxy (Eq. 16,
  :func:`aem.algorithms.analysis.group_relative_entropy`), h the mean token entropy (Eq. 13).

For the tabular policy and step ``lr``, Theorem 3.2.2 makes two of these exact to first order:
``measured_response = lr * predicted_response + O(lr^2)`` under the ``natural`` update and
``measured_token = lr * predicted_token / L + O(lr^2)`` under ``natural_token``
(:mod:`aem.lab.updates`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aem.algorithms.analysis import group_relative_entropy
from aem.lab.policies import PolicyTables
from aem.lab.updates import BatchTurns

DRIFT_FIELDS: tuple[str, ...] = (
    "measured_response",
    "measured_token",
    "predicted_token",
    "predicted_response",
    "predicted_aem",
)


def _along_turns(turns: BatchTurns, tables: PolicyTables) -> dict[str, Tensor]:
    """Exact per-turn quantities of ``tables`` at the batch's states and sampled responses."""
    runs = turns.state.shape[0]
    vocab = tables.log_probs.shape[3]
    where, tokens = turns.token_index()
    flat = where.view(runs, -1)
    token_entropy = tables.context_entropy.reshape(runs, -1).gather(1, flat).view(where.shape)
    token_log_p = tables.log_probs.reshape(runs, -1).gather(
        1, (flat * vocab) + tokens.view(runs, -1)
    )
    responses = tables.response_log_probs.shape[-1]
    state = turns.state.view(runs, -1)
    response_log_p = tables.response_log_probs.reshape(runs, -1).gather(
        1, state * responses + turns.response.view(runs, -1)
    )
    return {
        "token_entropy": token_entropy,
        "token_log_p": token_log_p.view(where.shape),
        "response_log_p": response_log_p.view(turns.state.shape),
        "response_entropy": tables.response_entropy.gather(1, state).view(turns.state.shape),
    }


def _turn_mean(values: Tensor, turns: BatchTurns) -> Tensor:
    """``[R']`` mean over each run's played turns."""
    played = torch.where(turns.alive, values, 0.0)
    return played.sum((1, 2, 3)) / turns.counts().to(values.dtype)


def drift_before(turns: BatchTurns, tables: PolicyTables) -> dict[str, Tensor]:
    """The three predictions and the entropies the measurement starts from."""
    now = _along_turns(turns, tables)
    advantage = torch.where(turns.alive, turns.advantage, 0.0)
    relative_token = (-now["token_log_p"] - now["token_entropy"]).sum(-1)
    relative_response = -now["response_log_p"] - now["response_entropy"]
    runs, groups = turns.state.shape[:2]
    group = torch.arange(runs * groups).view(runs, groups, 1, 1).expand(turns.state.shape)
    proxy = now["token_entropy"].mean(-1)  # Eq. 13 (every response has L tokens)
    relative_proxy = group_relative_entropy(
        proxy.reshape(-1), group.reshape(-1), stat_mask=turns.alive.reshape(-1)
    ).view(turns.state.shape)
    return {
        "predicted_token": _turn_mean(advantage * relative_token, turns),
        "predicted_response": _turn_mean(advantage * relative_response, turns),
        "predicted_aem": _turn_mean(advantage * relative_proxy, turns),
        "response_entropy": now["response_entropy"],
        "token_entropy": now["token_entropy"],
    }


def drift_after(
    turns: BatchTurns, before: dict[str, Tensor], tables: PolicyTables
) -> dict[str, Tensor]:
    """All :data:`DRIFT_FIELDS` per run, measured on the same turns with the updated tables."""
    now = _along_turns(turns, tables)
    response_change = now["response_entropy"] - before["response_entropy"]
    token_change = (now["token_entropy"] - before["token_entropy"]).mean(-1)
    return {
        "measured_response": _turn_mean(response_change, turns),
        "measured_token": _turn_mean(token_change, turns),
        "predicted_token": before["predicted_token"],
        "predicted_response": before["predicted_response"],
        "predicted_aem": before["predicted_aem"],
    }
