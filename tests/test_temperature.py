"""--tau=auto: one temperature per expert from its action gaps (amn_tf/temperature.py), and
how a run keeps the taus it chose (actor_mimic.run_temperatures)."""

import json
import math
import types

import numpy as np
import pytest

from amn_tf import actor_mimic, temperature


def two_actions(gaps):
    """[N, 2] Q-values whose best action leads by ``gaps`` (offsets and order varied)."""
    gaps = np.asarray(gaps, np.float64)
    q = np.stack([np.arange(len(gaps)) * 1.7, np.arange(len(gaps)) * 1.7 + gaps], 1)
    q[::2] = q[::2, ::-1].copy()  # the best action is the first on even rows
    return q


def test_auto_tau_matches_the_two_action_closed_form():
    # Two actions: top probability p = e^(g/tau) / (e^(g/tau) + 1) = 1 / (1 + exp(-g/tau)),
    # so p = target gives tau = g / log(target / (1 - target)).
    # One state, gap 0.3, target 0.75: tau = 0.3 / log(3) = 0.3 / 1.098612 = 0.273072.
    tau = temperature.auto_temperature(two_actions([0.3]), None, 0.75)
    assert tau == pytest.approx(0.3 / math.log(3.0), rel=1e-9)
    assert tau == pytest.approx(0.273072, rel=1e-5)
    # Several states: p is increasing in the gap at a fixed tau, so the median state's top
    # probability is the median gap's. Gaps (0.02, 0.5, 0.1, 0.3, 0.05): median gap 0.1,
    # target 0.5 + 0.25 = 0.75 again: tau = 0.1 / log(3) = 0.0910239.
    q = two_actions([0.02, 0.5, 0.1, 0.3, 0.05])
    tau = temperature.auto_temperature(q, None, 0.75)
    assert tau == pytest.approx(0.1 / math.log(3.0), rel=1e-9)
    assert temperature.median_top_probability(q, None, tau) == pytest.approx(0.75, abs=1e-12)
    # Target 0.9: log(0.9 / 0.1) = log 9 = 2.197225, tau = 0.1 / 2.197225 = 0.0455120.
    assert temperature.auto_temperature(q, None, 0.9) == pytest.approx(0.1 / math.log(9.0), rel=1e-9)
    # At tau 1 the median top probability is 1 / (1 + e^-0.1) = 0.524979 (near uniform).
    assert temperature.median_top_probability(q, None, 1.0) == pytest.approx(1 / (1 + math.exp(-0.1)))


def test_auto_tau_is_clamped_when_the_target_is_out_of_reach():
    low, high = temperature.TAU_RANGE
    # Tied best actions on most states: p <= 1/2 at any tau, a target 0.75 is out of reach.
    tied = two_actions([0.0, 0.0, 0.0, 1.0])
    assert temperature.auto_temperature(tied, None, 0.75) == low
    # Gap 1000: p(tau 10) = 1 / (1 + e^-100) > 0.75, so even the largest tau is too peaked.
    assert temperature.auto_temperature(two_actions([1000.0]), None, 0.75) == high
    with pytest.raises(ValueError, match=r"outside \(1/2, 1\)"):
        temperature.auto_temperature(two_actions([0.3]), None, 0.5)


def test_masked_actions_are_ignored():
    q = two_actions([0.02, 0.5, 0.1, 0.3, 0.05])
    expected = temperature.auto_temperature(q, None, 0.75)
    # Two more actions, illegal, with Q-values that would dominate every state if counted.
    wide = np.concatenate([q, np.full((5, 2), 50.0)], 1)[:, [2, 0, 3, 1]]
    mask = np.array([False, True, False, True])
    assert temperature.auto_temperature(wide, mask, 0.75) == pytest.approx(expected, rel=1e-12)
    # A per-state mask [N, A] gives the same; non-finite values on illegal ids are ignored too.
    wide[:, 0] = -np.inf
    per_state = np.broadcast_to(mask, wide.shape)
    assert temperature.auto_temperature(wide, per_state, 0.75) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(temperature.top_probabilities(wide, mask, 1.0),
                               temperature.top_probabilities(q, None, 1.0))


def test_choose_forces_a_number_or_picks_per_game():
    q = {"Pong": two_actions([0.1]), "Breakout": two_actions([0.4])}
    forced = temperature.choose(0.1, q)
    assert {g: row["tau"] for g, row in forced.items()} == {"Pong": 0.1, "Breakout": 0.1}
    # gap 0.1 at tau 0.1: 1 / (1 + e^-1) = 0.731059; at tau 1: 1 / (1 + e^-0.1) = 0.524979.
    assert forced["Pong"]["median_top_probability"] == pytest.approx(1 / (1 + math.exp(-1)))
    assert forced["Pong"]["median_top_probability_tau1"] == pytest.approx(1 / (1 + math.exp(-0.1)))
    auto = temperature.choose("auto", q, 0.75)  # tau = gap / log 3 per game
    assert auto["Pong"]["tau"] == pytest.approx(0.1 / math.log(3.0), rel=1e-9)
    assert auto["Breakout"]["tau"] == pytest.approx(0.4 / math.log(3.0), rel=1e-9)
    assert auto["Breakout"]["median_top_probability"] == pytest.approx(0.75)


class FakeExpert:
    """Stands in for an expert SavedModel: fixed Q-values, counts its calls."""

    def __init__(self, q):
        self.q, self.calls = q, 0

    def outputs(self, frames, game):
        self.calls += 1
        return {"q_values": types.SimpleNamespace(numpy=lambda: self.q[: len(frames)])}


def test_run_keeps_its_taus_on_resume_and_rechooses_when_tau_changes(tmp_path, capsys):
    games = ["Pong", "Breakout"]
    experts = {"Pong": FakeExpert(two_actions([0.1, 0.1, 0.1])),
               "Breakout": FakeExpert(two_actions([0.4, 0.4, 0.4]))}
    held_out = {g: np.zeros((3, 84, 84, 4), np.uint8) for g in games}
    auto = types.SimpleNamespace(tau="auto", tau_target_top_probability=0.75)
    taus = actor_mimic.run_temperatures(str(tmp_path), games, experts, held_out, auto, "amn")
    assert taus == pytest.approx({"Pong": 0.1 / math.log(3), "Breakout": 0.4 / math.log(3)})
    out = capsys.readouterr().out
    assert "[amn] tau Pong: 0.09102 (auto): median top-action probability 0.750 (at tau 1: 0.525" in out
    stored = json.loads((tmp_path / "temperatures.json").read_text())
    assert stored["tau"] == "auto" and stored["target_top_probability"] == 0.75
    assert stored["games"]["Breakout"]["tau"] == taus["Breakout"]
    # Resumed with the same flags: the stored taus, the experts not run again.
    again = actor_mimic.run_temperatures(str(tmp_path), games, experts, held_out, auto, "amn")
    assert again == taus and experts["Pong"].calls == 1
    assert "from " in capsys.readouterr().out
    # A number forces that tau on every game, and replaces the stored choice.
    forced = types.SimpleNamespace(tau=0.2, tau_target_top_probability=0.5)
    assert actor_mimic.run_temperatures(str(tmp_path), games, experts, held_out, forced,
                                        "amn") == {"Pong": 0.2, "Breakout": 0.2}
    assert "--tau changed" in capsys.readouterr().out
    assert json.loads((tmp_path / "temperatures.json").read_text())["tau"] == 0.2
