"""Exact, enumerable checks of the paper's theory (Sec. 3, Appendix C) on small tabular policies.

Everything here is float64 math on policies small enough to enumerate: a categorical policy
``pi`` over a finite action set (one state), and an autoregressive policy over a vocabulary of V
tokens with fixed response length L, whose V**L responses are listed in lexicographic order
(response index r = sum_t y_t V**(L-1-t)). Each function computes one side of an identity so that
tests can compare both sides; nothing here is used by training.

Notation: H(pi) = -sum_a pi_a log pi_a; surprisal of y is -log pi(y|s); the Fisher-Rao metric on
the open simplex is <u, v>_pi = sum_a u_a v_a / pi_a (Eq. 27).

Statements checked:
    Eq. 7   H(pi(.|s)) = E_y[sum_t H(pi(.|s, y_<t))]                  (Theorem 3.2.1, C.1 step 1)
    Eq. 8   E_tau[sum_k sum_t H_t] = E_tau[sum_k H(pi(.|s_k))]           (Theorem 3.2.1, C.1 step 2)
    Eq. 9   D_{grad J} H = A (-log pi_a - H),  J = A log pi_a           (Theorem 3.2.2)
    Eq. 29-31 the same with J + beta H - gamma KL(pi || pi_ref)           (Theorem C.3.1)
    Eq. 33  grad^FR f = pi * (df - <pi, df>)                              (Fisher-Rao gradient)
    C.4.1   -log pi(y|s) = sum_t H_t + M_L, M a zero-mean martingale      (Doob decomposition)
    Eq. 16-17 the first-order entropy change of an AEM-weighted update   (sign rule)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from aem.algorithms.modulation import aem_coefficients
from aem.checks import (
    require_finite,
    require_integer,
    require_ndim,
    require_non_negative,
    require_nonempty,
    require_positive,
    require_shape,
    require_tensor,
)

# ---------------------------------------------------------------------------------------------
# Categorical policy on the simplex (Theorem 3.2.2, Theorem C.3.1, Appendix C.2)
# ---------------------------------------------------------------------------------------------


def _require_distribution(name: str, pi: Tensor) -> None:
    """A 1-D floating tensor in the open simplex (all entries > 0, sum 1)."""
    require_tensor(name, pi)
    require_ndim(name, pi, 1)
    require_nonempty(name, pi)
    if not pi.dtype.is_floating_point:
        raise ValueError(f"{name} must have a floating dtype, got {pi.dtype}")
    require_finite(name, pi)
    if bool((pi <= 0).any()):
        raise ValueError(f"{name} must be > 0 everywhere (open simplex), got min {pi.min().item()}")
    tolerance = 1e-10 if pi.dtype == torch.float64 else 1e-5
    total = float(pi.sum())
    if abs(total - 1.0) > tolerance:
        raise ValueError(f"{name} must sum to 1 (tolerance {tolerance}), got {total!r}")


def _samples(pi: Tensor, actions: Tensor, advantages: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten sampled ``actions`` and their ``advantages`` to matching 1-D tensors."""
    require_tensor("actions", actions)
    require_integer("actions", actions)
    require_tensor("advantages", advantages)
    actions = actions.reshape(-1)
    advantages = advantages.reshape(-1).to(pi.dtype)
    require_nonempty("actions", actions)
    require_shape("advantages", advantages, actions.shape)
    require_finite("advantages", advantages)
    if int(actions.min()) < 0 or int(actions.max()) >= pi.numel():
        raise ValueError(
            f"actions must lie in [0, {pi.numel()}), got range "
            f"[{int(actions.min())}, {int(actions.max())}]"
        )
    return actions, advantages


def entropy(pi: Tensor) -> Tensor:
    """Shannon entropy H(pi) = -sum_a pi_a log pi_a of a distribution on the open simplex."""
    _require_distribution("pi", pi)
    return -(pi * pi.log()).sum()


def natural_gradient(pi: Tensor, grad_f: Tensor) -> Tensor:
    """Fisher-Rao gradient of f at ``pi`` from its Euclidean gradient (Eq. 33).

    grad^FR f = pi * (df - <pi, df> 1). It is tangent (sums to 0) and satisfies
    <grad^FR f, v>_pi = <df, v> for every tangent v (Eq. 34), so it does not depend on how f is
    extended off the simplex (adding c * 1 to ``grad_f`` changes nothing).
    """
    _require_distribution("pi", pi)
    require_tensor("grad_f", grad_f)
    require_shape("grad_f", grad_f, pi.shape)
    require_finite("grad_f", grad_f)
    grad_f = grad_f.to(pi.dtype)
    return pi * (grad_f - (pi * grad_f).sum())


def entropy_directional_derivative(pi: Tensor, direction: Tensor) -> Tensor:
    """D_v H(pi) = <dH, v> = sum_a v_a (-log pi_a - 1), by the chain rule (exact, first order)."""
    _require_distribution("pi", pi)
    require_tensor("direction", direction)
    require_shape("direction", direction, pi.shape)
    return (direction.to(pi.dtype) * (-pi.log() - 1.0)).sum()


def regularized_objective_gradient(
    pi: Tensor,
    actions: Tensor,
    advantages: Tensor,
    beta: float = 0.0,
    gamma: float = 0.0,
    pi_ref: Tensor | None = None,
) -> Tensor:
    """Euclidean gradient of J(pi) = sum_j A_j log pi_{a_j} + beta H(pi) - gamma KL(pi || pi_ref).

    This is the local objective of Theorem C.3.1 (Eq. 12), summed over sampled actions a_j with
    advantages A_j (one sample: Eq. 2). ``actions`` and ``advantages`` may be 0-d or 1-D.
    """
    _require_distribution("pi", pi)
    actions, advantages = _samples(pi, actions, advantages)
    require_non_negative("beta", beta)
    require_non_negative("gamma", gamma)
    log_pi = pi.log()
    grad = torch.zeros_like(pi).index_add_(0, actions, advantages / pi[actions])
    grad = grad + beta * (-log_pi - 1.0)
    if gamma > 0.0:
        if pi_ref is None:
            raise ValueError("pi_ref must be given when gamma > 0, got None")
        _require_distribution("pi_ref", pi_ref)
        require_shape("pi_ref", pi_ref, pi.shape)
        grad = grad - gamma * (log_pi - pi_ref.to(pi.dtype).log() + 1.0)
    return grad


def entropy_drift_natural_gradient(
    pi: Tensor,
    actions: Tensor,
    advantages: Tensor,
    beta: float = 0.0,
    gamma: float = 0.0,
    pi_ref: Tensor | None = None,
) -> Tensor:
    """Left side of Eq. 9 / Eq. 29: D_{grad^FR J} H(pi), computed by the chain rule.

    The natural gradient of J (:func:`regularized_objective_gradient`, :func:`natural_gradient`)
    is paired with dH = -log pi - 1; no closed form of the result is used.
    """
    grad_j = regularized_objective_gradient(pi, actions, advantages, beta, gamma, pi_ref)
    return entropy_directional_derivative(pi, natural_gradient(pi, grad_j))


class EntropyDriftTerms(NamedTuple):
    """The decomposition of Eq. 31 (Theorem C.3.1); ``total`` is the drift D_{grad J} H."""

    reward: Tensor  # (I)  sum_j A_j (-log pi_{a_j} - H): advantage x relative surprisal
    entropy_regularizer: Tensor  # beta Var_pi(log pi) >= 0
    kl_variance: Tensor  # gamma Var_pi(log pi) >= 0
    kl_covariance: Tensor  # -gamma Cov_pi(log pi, log pi_ref), sign not fixed

    @property
    def total(self) -> Tensor:
        return self.reward + self.entropy_regularizer + self.kl_variance + self.kl_covariance


def entropy_drift_terms(
    pi: Tensor,
    actions: Tensor,
    advantages: Tensor,
    beta: float = 0.0,
    gamma: float = 0.0,
    pi_ref: Tensor | None = None,
) -> EntropyDriftTerms:
    """Right side of Eq. 29-31, in closed form.

    D_{grad J} H = sum_j A_j (-log pi_{a_j} - H)
                   + beta Var_pi(log pi)
                   + gamma [Var_pi(log pi) - Cov_pi(log pi, log pi_ref)].
    The KL part is Cov_pi(log pi, log pi - log pi_ref): the drift of H along the natural gradient
    of -KL(pi || pi_ref), whose Fisher-Rao gradient is -pi * (log(pi / pi_ref) - KL).
    """
    _require_distribution("pi", pi)
    actions, advantages = _samples(pi, actions, advantages)
    require_non_negative("beta", beta)
    require_non_negative("gamma", gamma)
    log_pi = pi.log()
    h = -(pi * log_pi).sum()
    centred = log_pi - (pi * log_pi).sum()
    variance = (pi * centred**2).sum()
    reward = (advantages * (-log_pi[actions] - h)).sum()
    zero = torch.zeros((), dtype=pi.dtype)
    if gamma > 0.0:
        if pi_ref is None:
            raise ValueError("pi_ref must be given when gamma > 0, got None")
        _require_distribution("pi_ref", pi_ref)
        require_shape("pi_ref", pi_ref, pi.shape)
        covariance = (pi * centred * pi_ref.to(pi.dtype).log()).sum()
        return EntropyDriftTerms(reward, beta * variance, gamma * variance, -gamma * covariance)
    return EntropyDriftTerms(reward, beta * variance, zero, zero)


def entropy_drift_formula(
    pi: Tensor,
    actions: Tensor,
    advantages: Tensor,
    beta: float = 0.0,
    gamma: float = 0.0,
    pi_ref: Tensor | None = None,
) -> Tensor:
    """Eq. 9 / Eq. 29 in closed form: A (-log pi_a - H) (+ regularizer terms of Eq. 31)."""
    return entropy_drift_terms(pi, actions, advantages, beta, gamma, pi_ref).total


def finite_step_entropy_change(pi: Tensor, direction: Tensor, eta: float) -> Tensor:
    """H(pi + eta v) - H(pi): equals eta D_v H + O(eta^2) for a tangent v (sum v = 0).

    The second-order term is exactly -eta^2 / 2 * sum_a v_a^2 / pi_a (the Fisher-Rao norm of v).
    """
    _require_distribution("pi", pi)
    require_tensor("direction", direction)
    require_shape("direction", direction, pi.shape)
    require_positive("eta", eta)
    stepped = pi + eta * direction.to(pi.dtype)
    if bool((stepped <= 0).any()):
        raise ValueError(f"eta={eta} steps out of the open simplex; use a smaller eta")
    return -(stepped * stepped.log()).sum() - entropy(pi)


def logit_natural_gradient(logits: Tensor, grad_logits: Tensor) -> Tensor:
    """Fisher-preconditioned (natural) gradient in softmax-logit space.

    With pi = softmax(z), the logit Fisher matrix is F = diag(pi) - pi pi^T (singular along 1).
    Every solution of F dz = g (g = dJ/dz sums to 0) is g / pi + c 1; this returns the
    minimum-norm one (c chosen so dz sums to 0), i.e. F^+ g. Pushed forward by the softmax
    Jacobian it is the simplex natural gradient of Eq. 33: d softmax(z)[dz] = grad^FR J.
    """
    require_tensor("logits", logits)
    require_ndim("logits", logits, 1)
    require_nonempty("logits", logits)
    require_finite("logits", logits)
    require_tensor("grad_logits", grad_logits)
    require_shape("grad_logits", grad_logits, logits.shape)
    require_finite("grad_logits", grad_logits)
    pi = torch.softmax(logits, dim=0)
    scaled = grad_logits.to(pi.dtype) / pi
    return scaled - scaled.mean()


# ---------------------------------------------------------------------------------------------
# Autoregressive policies and a small MDP (Theorem 3.2.1, Proposition C.4.1)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoregressivePolicy:
    """A tabular autoregressive policy pi(y_t | s, y_<t) over S states, V tokens, length L.

    ``step_logits[t]`` has shape ``[S, V**t, V]``: the logits of token t after each prefix y_<t,
    prefixes indexed in base V (lexicographic order, most significant token first).
    """

    step_logits: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        if len(self.step_logits) == 0:
            raise ValueError("step_logits must hold at least one step, got 0")
        first = require_tensor("step_logits[0]", self.step_logits[0])
        require_ndim("step_logits[0]", first, 3)
        states, _, vocab = first.shape
        for t, logits in enumerate(self.step_logits):
            require_tensor(f"step_logits[{t}]", logits)
            require_shape(f"step_logits[{t}]", logits, (states, vocab**t, vocab))
            require_finite(f"step_logits[{t}]", logits)
        if states < 1 or vocab < 1:
            raise ValueError(
                f"step_logits[0] must have S >= 1 and V >= 1, got {tuple(first.shape)}"
            )

    @property
    def num_states(self) -> int:
        return int(self.step_logits[0].shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.step_logits[0].shape[2])

    @property
    def length(self) -> int:
        return len(self.step_logits)

    @property
    def num_responses(self) -> int:
        return self.vocab_size**self.length


def random_autoregressive_policy(
    num_states: int, vocab_size: int, length: int, seed: int, scale: float = 2.0
) -> AutoregressivePolicy:
    """Float64 policy with i.i.d. N(0, scale^2) logits for every state and prefix."""
    for name, value in (("num_states", num_states), ("vocab_size", vocab_size), ("length", length)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    require_non_negative("scale", scale)
    generator = torch.Generator().manual_seed(seed)
    steps = tuple(
        scale
        * torch.randn(
            num_states, vocab_size**t, vocab_size, generator=generator, dtype=torch.float64
        )
        for t in range(length)
    )
    return AutoregressivePolicy(steps)


def all_responses(vocab_size: int, length: int) -> Tensor:
    """``[V**L, L]`` every response, row r being r written in base V (lexicographic order)."""
    if vocab_size < 1 or length < 1:
        raise ValueError(f"vocab_size and length must be >= 1, got {vocab_size}, {length}")
    return torch.tensor(list(itertools.product(range(vocab_size), repeat=length)), dtype=torch.long)


def _along_responses(policy: AutoregressivePolicy, per_prefix: list[Tensor]) -> Tensor:
    """Gather ``per_prefix[t]`` (``[S, V**t, ...]``) per response: ``[S, N, L, ...]``."""
    vocab, length = policy.vocab_size, policy.length
    index = torch.arange(policy.num_responses)
    gathered = [per_prefix[t][:, index // vocab ** (length - t)] for t in range(length)]
    return torch.stack(gathered, dim=2)


def token_log_probs(policy: AutoregressivePolicy) -> Tensor:
    """``[S, N, L]`` log pi(y_t | s, y_<t) of each token of each of the N = V**L responses."""
    responses = all_responses(policy.vocab_size, policy.length)
    log_probs = _along_responses(
        policy, [torch.log_softmax(logits, dim=-1) for logits in policy.step_logits]
    )  # [S, N, L, V]
    index = responses[None, :, :, None].expand(policy.num_states, -1, -1, 1)
    return log_probs.gather(-1, index).squeeze(-1)


def token_entropies(policy: AutoregressivePolicy) -> Tensor:
    """``[S, N, L]`` H_t = H(pi(. | s, y_<t)) along each response (Eq. 5), full vocabulary."""
    per_prefix = []
    for logits in policy.step_logits:
        log_p = torch.log_softmax(logits, dim=-1)
        per_prefix.append(-(log_p.exp() * log_p).sum(-1))
    return _along_responses(policy, per_prefix)


def response_log_probs(policy: AutoregressivePolicy) -> Tensor:
    """``[S, N]`` log pi(y | s) = sum_t log pi(y_t | s, y_<t) (Eq. 22)."""
    return token_log_probs(policy).sum(-1)


def response_level_entropy(policy: AutoregressivePolicy) -> Tensor:
    """``[S]`` H(pi(. | s)) = -sum_y pi(y|s) log pi(y|s) over all V**L responses (Eq. 4, 21)."""
    log_p = response_log_probs(policy)
    return -(log_p.exp() * log_p).sum(-1)


def expected_token_entropy_sum(policy: AutoregressivePolicy) -> Tensor:
    """``[S]`` E_{y ~ pi(.|s)}[sum_t H(pi(. | s, y_<t))]: the right side of Eq. 7."""
    return (response_log_probs(policy).exp() * token_entropies(policy).sum(-1)).sum(-1)


@dataclass(frozen=True)
class TabularMDP:
    """A finite-horizon MDP whose actions are whole responses.

    ``initial``: ``[S]`` start-state distribution; ``transition``: ``[S, N, S]`` next-state
    distribution after response r in state s (N = V**L); ``horizon``: number of turns K.
    """

    initial: Tensor
    transition: Tensor
    horizon: int

    def __post_init__(self) -> None:
        _require_nonnegative_distribution("initial", self.initial)
        require_ndim("initial", self.initial, 1)
        _require_nonnegative_distribution("transition", self.transition)
        require_ndim("transition", self.transition, 3)
        states = self.initial.shape[0]
        require_shape("transition", self.transition, (states, self.transition.shape[1], states))
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")


def _require_nonnegative_distribution(name: str, value: Tensor) -> None:
    """Non-negative entries summing to 1 over the last axis."""
    require_tensor(name, value)
    require_nonempty(name, value)
    require_finite(name, value)
    if bool((value < 0).any()):
        raise ValueError(f"{name} must be >= 0, got min {value.min().item()}")
    error = float((value.sum(-1) - 1.0).abs().max())
    if error > 1e-10:
        raise ValueError(f"{name} must sum to 1 over its last axis, off by {error!r}")


def random_mdp(
    num_states: int, num_responses: int, horizon: int, seed: int, deterministic: bool = False
) -> TabularMDP:
    """Float64 MDP with Dirichlet(1) start and transition rows (one-hot rows if deterministic)."""
    generator = torch.Generator().manual_seed(seed)
    initial = -torch.rand(num_states, generator=generator, dtype=torch.float64).log()
    initial = initial / initial.sum()
    if deterministic:
        targets = torch.randint(num_states, (num_states, num_responses), generator=generator)
        transition = torch.nn.functional.one_hot(targets, num_states).to(torch.float64)
    else:
        shape = (num_states, num_responses, num_states)
        transition = -torch.rand(shape, generator=generator, dtype=torch.float64).log()
        transition = transition / transition.sum(-1, keepdim=True)
    return TabularMDP(initial, transition, horizon)


def _check_compatible(mdp: TabularMDP, policy: AutoregressivePolicy) -> None:
    expected = (policy.num_states, policy.num_responses, policy.num_states)
    require_shape("mdp.transition", mdp.transition, expected)


def state_visitation(mdp: TabularMDP, policy: AutoregressivePolicy) -> Tensor:
    """``[K, S]`` on-policy visitation d_k(s) = P(s_k = s) by forward recursion."""
    _check_compatible(mdp, policy)
    response_probs = response_log_probs(policy).exp().to(torch.float64)
    transition = mdp.transition.to(torch.float64)
    visits = [mdp.initial.to(torch.float64)]
    for _ in range(mdp.horizon - 1):
        step = torch.einsum("s,sr,srt->t", visits[-1], response_probs, transition)
        visits.append(step)
    return torch.stack(visits)


def expected_response_entropy_sum(mdp: TabularMDP, policy: AutoregressivePolicy) -> Tensor:
    """E_tau[sum_k H(pi(. | s_k))] = sum_k sum_s d_k(s) H(pi(.|s)): the right side of Eq. 8."""
    return (state_visitation(mdp, policy) * response_level_entropy(policy)).sum()


def global_token_entropy(mdp: TabularMDP, policy: AutoregressivePolicy) -> Tensor:
    """E_tau[sum_k sum_t H(pi(. | s_k, y_k,<t))] by enumerating every trajectory (Eq. 6).

    Exponential in the horizon ((S N)**K trajectories): for tiny MDPs only. Uses no visitation
    recursion, so it is an independent computation of the left side of Eq. 8.
    """
    _check_compatible(mdp, policy)
    response_probs = response_log_probs(policy).exp().tolist()
    path_entropy = token_entropies(policy).sum(-1).tolist()
    initial = mdp.initial.tolist()
    transition = mdp.transition.tolist()
    states, horizon = range(policy.num_states), mdp.horizon
    total = 0.0
    for start in states:
        for chosen in itertools.product(range(policy.num_responses), repeat=horizon):
            for visited in itertools.product(states, repeat=horizon - 1):
                probability, entropy_sum, state = initial[start], 0.0, start
                for k, response in enumerate(chosen):
                    probability *= response_probs[state][response]
                    entropy_sum += path_entropy[state][response]
                    if k + 1 < horizon:
                        probability *= transition[state][response][visited[k]]
                        state = visited[k]
                total += probability * entropy_sum
    return torch.tensor(total, dtype=torch.float64)


class DoobDecomposition(NamedTuple):
    """Proposition C.4.1 along every response, each ``[S, N, L]`` except ``surprisal``.

    ``compensator[..., t] = sum_{k<=t} H_k`` (predictable), ``martingale[..., t] = M_t =
    sum_{k<=t} (-log pi(y_k | s, y_<k) - H_k)``, ``surprisal = -log pi(y|s)`` (``[S, N]``), and
    ``probs = pi(y|s)`` (``[S, N]``); surprisal = compensator[..., -1] + martingale[..., -1].
    """

    surprisal: Tensor
    compensator: Tensor
    martingale: Tensor
    probs: Tensor


def doob_decomposition(policy: AutoregressivePolicy) -> DoobDecomposition:
    """Split each response's surprisal into predictable entropy and a martingale (C.4.1)."""
    log_p = token_log_probs(policy)
    h = token_entropies(policy)
    return DoobDecomposition(
        surprisal=-log_p.sum(-1),
        compensator=h.cumsum(-1),
        martingale=(-log_p - h).cumsum(-1),
        probs=log_p.sum(-1).exp(),
    )


def martingale_increment_means(policy: AutoregressivePolicy) -> list[Tensor]:
    """E[M_t - M_{t-1} | s, y_<t] for every prefix, by enumeration of full responses (Eq. 48).

    Entry t has shape ``[S, V**t]``: the pi-weighted mean of the increment over all responses that
    share the prefix (responses with one prefix are a contiguous block of V**(L-t) rows).
    Proposition C.4.1 says every entry is 0.
    """
    doob = doob_decomposition(policy)
    increments = torch.diff(
        doob.martingale, dim=-1, prepend=torch.zeros_like(doob.martingale[..., :1])
    )
    vocab, length, states = policy.vocab_size, policy.length, policy.num_states
    means = []
    for t in range(length):
        weights = doob.probs.reshape(states, vocab**t, vocab ** (length - t))
        values = increments[..., t].reshape(states, vocab**t, vocab ** (length - t))
        means.append((weights * values).sum(-1) / weights.sum(-1))
    return means


# ---------------------------------------------------------------------------------------------
# AEM sign rule (Eq. 16-17)
# ---------------------------------------------------------------------------------------------


class AEMDriftComparison(NamedTuple):
    """First-order entropy change of H(pi(.|s)) under uniform and AEM-weighted updates (Eq. 16).

    ``uniform`` = sum_j A_j (s_j - H), ``modulated`` = sum_j w_j A_j (s_j - H), each computed by
    the chain rule along the natural gradient (not from the closed form); ``shift[j]`` =
    (w_j - 1) A_j (s_j - H) so that modulated - uniform = shift.sum(). ``aligned[j]`` is True when
    the proxy ranks response j on the correct side of the baseline: (w_j - 1)(s_j - H) <= 0, i.e.
    upweighted responses have surprisal below H and downweighted ones above H. Where aligned,
    sign(shift_j) = -sign(A_j) or shift_j = 0 (Eq. 17).
    """

    uniform: Tensor
    modulated: Tensor
    shift: Tensor
    aligned: Tensor
    weights: Tensor
    relative_surprisal: Tensor  # s_j - H


def aem_entropy_drift_comparison(
    policy: AutoregressivePolicy,
    state: int,
    responses: Tensor,
    advantages: Tensor,
    temperature: float = 1.0,
) -> AEMDriftComparison:
    """Compare the entropy drift of sum_j A_j log pi(y_j|s) with and without AEM weights.

    The group is the sampled ``responses`` (``[n]`` response indices, see :func:`all_responses`)
    at one ``state``; w_j comes from :func:`aem.algorithms.modulation.aem_coefficients` on the
    length-normalised token-entropy proxy (Eq. 13-15). The update is the Fisher-Rao natural
    gradient on the response simplex (all V**L responses), as in Theorem 3.2.2.

    What is exact (Eq. 16): modulated - uniform = sum_j (w_j - 1) A_j (s_j - H). Because the
    weights have group mean 1, with a common advantage A this is
    A * sum_j (w_j - 1)(s_j - mean_j s_j), which has the sign of -A whenever the proxy and the
    surprisal are ordered alike (Chebyshev's sum inequality, as w decreases in the proxy). The
    claim of Eq. 17 holds per response exactly where ``aligned`` is True; when the proxy ranks a
    response on the wrong side of the baseline H, its shift has the opposite sign.
    """
    if not 0 <= state < policy.num_states:
        raise ValueError(f"state must lie in [0, {policy.num_states}), got {state}")
    require_non_negative("temperature", temperature)
    log_p = response_log_probs(policy)[state]
    pi = log_p.exp()
    responses, advantages = _samples(pi, responses, advantages)
    proxy = token_entropies(policy)[state, responses].mean(-1)  # Eq. 13 (fixed length L)
    weights = aem_coefficients(
        proxy, torch.zeros_like(responses), temperature=temperature, eps=1e-12
    ).to(torch.float64)
    uniform = entropy_drift_natural_gradient(pi, responses, advantages)
    modulated = entropy_drift_natural_gradient(pi, responses, weights * advantages)
    relative_surprisal = -pi.log()[responses] - entropy(pi)
    shift = (weights - 1.0) * advantages * relative_surprisal
    aligned = (weights - 1.0) * relative_surprisal <= 0
    return AEMDriftComparison(uniform, modulated, shift, aligned, weights, relative_surprisal)
