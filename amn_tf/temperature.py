"""The temperature of each expert's Boltzmann policy softmax(Q_E(s, .) / tau).

``--tau=auto`` picks one tau per expert from its own Q-values; a number forces one tau for
every expert (the authors' setting, tau 1 by default). Numpy only: this runs once per run,
on the held-out expert states, never in the training graph.

The rule of ``--tau=auto`` (``auto_temperature``): on the expert's held-out states, tau is
chosen so that the **median over states of the top-action probability**
``max_a softmax(Q_E(s, legal) / tau)_a`` equals ``--tau_target_top_probability`` (default
0.5). The median top probability falls monotonically from (nearly) 1 as tau -> 0 to
1/|A| as tau -> infinity, so tau is found by bisection on log(tau), clamped to
``TAU_RANGE``. Experts whose action gaps are small (CPU-trained DQNs, docs/results/table1/)
get a small tau, experts with large gaps a large one: every game's targets are then equally
peaked, which one tau for all games cannot do.
"""

from __future__ import annotations

import numpy as np

TAU_RANGE = (1e-3, 10.0)  # auto taus are clamped to this range
DEFAULT_TARGET = 0.5


def _legal(q_values, mask):
    q_values = np.asarray(q_values, np.float64)
    if q_values.ndim != 2 or q_values.shape[0] == 0:
        raise ValueError(f"q_values must be [N, A] with N > 0, got shape {q_values.shape}")
    if mask is None:
        mask = np.ones(q_values.shape, bool)
    mask = np.broadcast_to(np.asarray(mask, bool), q_values.shape)
    if not mask.any(axis=1).all():
        raise ValueError("every state needs at least one legal action")
    if not np.isfinite(q_values[mask]).all():
        raise ValueError("the expert's Q-values on legal actions are not all finite")
    return q_values, mask


def top_probabilities(q_values, mask=None, tau: float = 1.0) -> np.ndarray:
    """[N] probability of the best legal action under softmax(Q(s, legal) / tau).

    Args:
      q_values: [N, A] Q-values (anything on illegal entries).
      mask: [A] or [N, A] bool legal actions; None: all legal.
    """
    q_values, mask = _legal(q_values, mask)
    z = np.where(mask, q_values, -np.inf)
    z = (z - z.max(axis=1, keepdims=True)) / tau
    weights = np.where(mask, np.exp(z), 0.0)  # the best action's weight is exp(0) = 1
    return 1.0 / weights.sum(axis=1)


def median_top_probability(q_values, mask=None, tau: float = 1.0) -> float:
    return float(np.median(top_probabilities(q_values, mask, tau)))


def auto_temperature(q_values, mask=None, target: float = DEFAULT_TARGET, bounds=TAU_RANGE,
                     iterations: int = 60) -> float:
    """tau such that the median over states of max_a softmax(Q(s, legal) / tau)_a = target.

    Bisection on log(tau) within ``bounds`` (the median top probability is monotone
    decreasing in tau); when ``target`` is out of reach inside ``bounds`` the bound closest
    to it is returned (e.g. the lower bound when more than half of the states have tied
    best actions).

    Args:
      q_values: [N, A] the expert's Q-values on N states (anything on illegal entries).
      mask: [A] or [N, A] bool legal actions; None: all legal. Illegal entries are ignored.
      target: the median top-action probability wanted, in (1/|A legal|, 1).
    """
    q_values, mask = _legal(q_values, mask)
    fewest = int(mask.sum(axis=1).min())
    if not 1.0 / fewest < target < 1.0:
        raise ValueError(f"target top-action probability {target} is outside (1/{fewest}, 1): "
                         f"with {fewest} legal actions a softmax's top probability is at least 1/{fewest}")
    low, high = np.log(bounds[0]), np.log(bounds[1])
    if median_top_probability(q_values, mask, bounds[0]) <= target:
        return float(bounds[0])
    if median_top_probability(q_values, mask, bounds[1]) >= target:
        return float(bounds[1])
    for _ in range(iterations):  # invariant: p(low) > target > p(high)
        middle = 0.5 * (low + high)
        if median_top_probability(q_values, mask, np.exp(middle)) > target:
            low = middle
        else:
            high = middle
    return float(np.exp(0.5 * (low + high)))


def choose(tau, q_values_by_game: dict, target: float = DEFAULT_TARGET) -> dict:
    """Per game ``{"tau", "median_top_probability", "median_top_probability_tau1"}``.

    Args:
      tau: a positive number (every game gets it) or "auto" (``auto_temperature`` per game).
      q_values_by_game: game -> [N, A] the game's expert Q-values over its legal actions on
        its held-out states.
    """
    chosen = {}
    for game, q_values in q_values_by_game.items():
        value = auto_temperature(q_values, None, target) if tau == "auto" else float(tau)
        chosen[game] = {"tau": value,
                        "median_top_probability": median_top_probability(q_values, None, value),
                        "median_top_probability_tau1": median_top_probability(q_values, None, 1.0)}
    return chosen
