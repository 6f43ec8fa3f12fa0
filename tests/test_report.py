"""Table 2's arithmetic on hand-made transfer curves: block means and their spread over seeds,
the default reach score, frames to reach it on the seeds' mean curve and the ratio to random
init, and each rank_sources prediction held against the runs. (tests/test_transfer.py builds
Table 2 from real tiny transfer runs.)"""

import numpy as np
import pytest

from amn_tf import config as config_lib
from amn_tf import report, tables

FAST = {key: None for key in report.RECIPE_FLAGS} | {"n_step": 3, "update_period": 4, "learning_starts": 20_000}


def _history(points, recipe, short=0):
    """Test-play records of an uninterrupted run (learner updates as its recipe implies),
    ``short`` updates fewer from the second on (a resume that refilled the replay)."""
    return [{"frames": f, "mean": s, "updates": report.updates_at(recipe, f) - (short if i else 0)}
            for i, (f, s) in enumerate(points)]


def _run(init, seed, scores, every=100_000, short=0):
    points = [((i + 1) * every, s) for i, s in enumerate(scores)]
    return {"game": "Breakout", "init": init, "seed": seed, "dir": f"{init}-{seed}",
            "name": f"{init}-seed{seed}", "recipe": FAST, "points": points,
            "history": _history(points, FAST, short)}


def _row(table, init):
    return next(line for line in table.splitlines() if line.startswith(f"| {init} |"))


RUNS = [
    _run("random", 0, [1.0, 2.0, 4.0, 10.0]),
    _run("random", 1, [1.0, 4.0, 6.0, 14.0]),   # random-init final: (10 + 14) / 2 = 12 -> reach 6
    _run("amn-policy", 0, [2.0, 8.0, 9.0, 20.0]),
    _run("amn-policy", 1, [2.0, 2.0, 11.0, 16.0]),  # mean curve 2, 5, 10, 18: reaches 6 at 300k
    _run("amn-feature", 0, [1.0, 1.0, 1.0, 1.0]),
    _run("amn-feature", 1, [1.0, 1.0, 1.0, 30.0]),  # seed 1 alone reaches at 400k; mean 15.5 at 400k
]


def test_reach_score_defaults_to_half_the_random_init_final_score():
    groups = report._group(RUNS)["Breakout"]
    assert report.reach_score(groups) == (6.0, "half the random-init final score 12.0 "
                                               "(last test play, mean over seeds)")
    assert report.reach_score(groups, 3.0)[0] == 3.0
    no_random = {k: v for k, v in groups.items() if k != "random"}
    assert report.reach_score(no_random)[0] == 0.5 * 30.0


def test_mean_curve_keeps_the_frames_every_seed_evaluated():
    short = _run("random", 2, [3.0, 5.0])
    assert report.mean_curve([RUNS[0], short]) == [(100_000, 2.0), (200_000, 3.5)]


def test_table2_blocks_spread_reach_and_ratio():
    table = report.table2(report._group(RUNS), blocks=2, random_play={"Breakout": 1.2})
    assert "## Breakout: frames per block 200,000; reach score 6.0" in table
    # Blocks of 200k frames: random seed 0 -> (1.5, 7), seed 1 -> (2.5, 10): mean 2.0 +- 0.5, 8.5 +- 1.5.
    # Random init's mean curve 1, 3, 5, 12 reaches 6 at 400k; amn-policy's 2, 5, 10, 18 at 300k.
    # Per seed: random seed 0 first reaches 6 at 400k, seed 1 (6.0 at 300k) at 300k.
    # Random init's mean curve stays above 6 from 400k (its only test play there); amn-policy's from
    # 300k: 0.75 of random init's.
    assert _row(table, "random") == ("| random | 2 | 2.0 +- 0.5 | 8.5 +- 1.5 | 400,000 | - | 400,000 "
                                     "| 400,000, 300,000 |")
    # amn-policy blocks: seed 0 (5, 14.5), seed 1 (2, 13.5): 3.5 +- 1.5, 14.0 +- 0.5, best in both.
    assert _row(table, "amn-policy") == ("| amn-policy | 2 | **3.5 +- 1.5** | **14.0 +- 0.5** |"
                                         " 300,000 | 0.75 | 300,000 (0.75) | 200,000, 300,000 |")
    # amn-feature: mean curve 1, 1, 1, 15.5 reaches 6 at 400k (only thanks to seed 1).
    assert _row(table, "amn-feature").endswith("| 400,000 | 1.00 | 400,000 (1.00) | -, 400,000 |")
    assert "Random play (uniform legal actions): 1.2." in table
    assert "not above random play" not in table


def test_table2_when_random_init_never_reaches_the_score():
    table = report.table2(report._group(RUNS), blocks=2, reach=16.0, random_play={"Breakout": 20.0})
    assert _row(table, "random").endswith("| not reached | - | not reached | -, - |")
    assert _row(table, "amn-policy").endswith("| 400,000 | < 1 (random init never reached it) "
                                              "| 400,000 (< 1: random init never stays above it) | 400,000, 400,000 |")
    assert _row(table, "amn-feature").endswith("| not reached | - | not reached | -, 400,000 |")
    assert "The reach score 16.0 is not above random play" in table


def test_table2_stays_above_from_does_not_count_a_reach_the_curve_falls_back_from():
    # Zero-shot play above the reach score that learning then wipes out: its mean curve 8, 3, 3, 9
    # first reaches 6 at 100k (0.25 of random init's 400k) but stays above it only from 400k (1.00).
    runs = RUNS + [_run("amn-zs", 0, [9.0, 2.0, 3.0, 10.0]), _run("amn-zs", 1, [7.0, 4.0, 3.0, 8.0])]
    table = report.table2(report._group(runs), blocks=2)
    assert "| 100,000 | 0.25 | 400,000 (1.00) | 100,000, 100,000 |" in _row(table, "amn-zs")
    # A curve whose last test play is under the reach score never stays above it.
    dips = RUNS + [_run("amn-dip", 0, [7.0, 8.0, 9.0, 5.0])]
    assert "| 100,000 | 0.25 | not reached | 100,000 |" in _row(report.table2(report._group(dips), blocks=2), "amn-dip")


def test_table2_single_seed_has_no_spread_and_missing_blocks_show_a_dash():
    runs = [_run("random", 0, [1.0, 3.0], every=300_000), _run("amn-x", 0, [2.0, 4.0, 5.0, 6.0], every=150_000)]
    table = report.table2(report._group(runs), blocks=4)
    # Blocks of 150k: random evaluated at 300k and 600k only -> blocks 1 and 3 empty.
    assert _row(table, "random").startswith("| random | 1 | - | 1.0 | - | 3.0 |")
    assert _row(table, "amn-x").startswith("| amn-x | 1 | **2.0** | **4.0** | **5.0** | **6.0** |")
    assert not np.isnan(report.reach_score(report._group(runs)["Breakout"])[0])


def test_table2_names_runs_that_learned_less_than_an_uninterrupted_run():
    """A resume without the replay refills it before learning again: Table 2 says which runs
    did fewer learner updates, and which never recorded them."""
    assert "learner updates" not in report.table2(report._group(RUNS), blocks=2)  # all uninterrupted
    short = _run("random", 0, [1.0, 2.0, 4.0, 10.0], short=5_000)
    old = _run("amn-policy", 1, [2.0, 2.0, 11.0, 16.0])
    for record in old["history"]:
        del record["updates"]
    table = report.table2(report._group([short, *RUNS[1:3], old, *RUNS[4:]]), blocks=2)
    # 400k frames = 100,000 agent steps; (100,000 - 20,000) / 4 = 20,000 updates uninterrupted.
    assert ("- random-seed0: 15,000 learner updates by 0.40M frames, 5,000 (25%) fewer than an "
            "uninterrupted run: 5,000 not made while a resume without its replay refilled it") in table
    assert "- learner updates not recorded (runs from before they were): amn-policy-seed1" in table
    assert "random-seed1:" not in table and "amn-feature-seed0:" not in table
    # Updates skipped as non-finite (--skip_nonfinite) are told apart from a refill's.
    short["history"][-1]["skipped_updates"] = 2_000
    table = report.table2(report._group([short, *RUNS[1:]]), blocks=2)
    assert ("5,000 (25%) fewer than an uninterrupted run: 2,000 skipped as non-finite; 3,000 not made "
            "while a resume without its replay refilled it") in table


def _eval_file(tmp_path, name, saved_model, results, **extra):
    import json

    payload = {"saved_model": saved_model, "kind": extra.pop("kind", "amn"),
               "results": [{"game": g, "mean": m, "max": x, "episodes": 30, "capped": 0}
                           for g, (m, x) in results.items()], **extra}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(payload))
    return str(path)


def test_table1_averages_the_seeds_of_each_amn_as_the_paper(tmp_path):
    paths = [
        _eval_file(tmp_path, "expert", "saved_models/experts/Pong/1", {"Pong": (20.0, 21.0)}, kind="expert"),
        _eval_file(tmp_path, "random", None, {"Pong": (-20.0, -19.0)}, random_policy=True),
        _eval_file(tmp_path, "s0", "runs/exports/amn/amn6-beta0-seed0/1", {"Pong": (16.0, 21.0)}),
        _eval_file(tmp_path, "s1", "runs/exports/amn/amn6-beta0-seed1/1", {"Pong": (20.0, 19.0)}),
        _eval_file(tmp_path, "other", "runs/exports/amn/amn6-beta0.01-seed0/1", {"Pong": (10.0, 15.0)}),
    ]
    evals = [item for path in paths for item in report.load_eval(path)]
    groups = report.seed_groups(evals)
    assert [g["name"] for g in groups] == ["amn6-beta0 (mean of 2 seeds)"]  # a lone seed: no group
    assert groups[0]["results"]["Pong"] == {"game": "Pong", "mean": 18.0, "max": 20.0,
                                            "episodes": 60, "capped": 0}
    report.report_evals(evals, str(tmp_path))
    text = (tmp_path / "table1_saved_models.md").read_text()
    averaged, every = text.split("## Every model")
    # 18 / 20 = 90% of the expert's mean; max 20 / 21 = 95%.
    assert "| Pong | -20.0 | 20.0 (21) | 30/60 | 18.0 (20) | 90% / 95% |" in averaged
    assert "amn6-beta0 (mean of 2 seeds): at least 90% of the expert on 1 of 1 games." in averaged
    assert "amn6-beta0-seed0/1 mean (max)" in every and "amn6-beta0.01-seed0/1" in every


def test_random_relative_by_hand():
    """(model - random) / (expert - random): a Pong AMN at -14.5 against random -20.2 and
    expert 16.5 is 5.7 / 36.7 = 15.5% of the way from random to the expert, where the plain
    ratio -14.5 / 16.5 reads -88%."""
    assert tables.random_relative(-14.5, 16.5, -20.2) == pytest.approx(100 * 5.7 / 36.7)
    assert tables.random_relative(-14.5, 16.5, -20.2) == pytest.approx(15.53, abs=0.01)
    assert tables.percent_text(tables.random_relative(-14.5, 16.5, -20.2)) == "16%"
    assert tables.percent_text(tables.percent_of_expert(-14.5, 16.5)) == "-88%"
    assert tables.percent_text(-0.4) == "0%" and tables.percent_text(-0.6) == "-1%"  # never "-0%"
    assert tables.random_relative(-20.2, 16.5, -20.2) == 0.0
    assert tables.random_relative(16.5, 16.5, -20.2) == 100.0
    # Unknown random play, or an expert not above it: no figure.
    for random_mean in (None, float("nan"), 16.5, 20.0):
        assert tables.percent_text(tables.random_relative(-14.5, 16.5, random_mean)) == "-"


PONG_EXPERT = {"mean": 16.5, "max": 21.0, "random_mean": -20.2}
PONG_AMN = {"mean": -14.5, "max": -9.0, "agreement": 0.5}


def test_table1_puts_the_random_relative_figure_beside_percent_of_expert():
    record = {"games": {"Pong": PONG_AMN}}
    text = tables.table(tables.rows_of(record, {"Pong": PONG_EXPERT}, ["Pong"]))
    header, _, line = text.splitlines()
    assert header == ("| game | random mean | expert mean | expert max | AMN mean | AMN max | AMN % of expert "
                      "| (AMN - random) / (expert - random) | agreement |")
    assert line == "| Pong | -20.2 | 16.5 | 21.0 | -14.5 | -9.0 | -88% | 16% | 50% |"
    # An experts.json written without random play's mean, and rows kept before the figure: "-".
    older = {key: value for key, value in PONG_EXPERT.items() if key != "random_mean"}
    assert tables.table(tables.rows_of(record, {"Pong": older}, ["Pong"])).splitlines()[2] == (
        "| Pong | - | 16.5 | 21.0 | -14.5 | -9.0 | -88% | - | 50% |")
    kept = {"game": "Pong", "expert_mean": 16.5, "expert_max": 21.0, "amn_mean": -14.5, "amn_max": -9.0,
            "percent": tables.percent_of_expert(-14.5, 16.5), "agreement": float("nan")}
    assert tables.table([kept], "MDQN").splitlines()[2] == "| Pong | - | 16.5 | 21.0 | -14.5 | -9.0 | -88% | - | - |"
    # The multitask DQN's test-play line.
    assert tables.scores_line(record, ["Pong"], {"Pong": PONG_EXPERT}) == (
        "Pong -14.5 (16% random-relative, -88% of expert)")
    assert tables.scores_line(record, ["Pong"], {"Pong": older}) == "Pong -14.5 (-88% of expert)"


def test_report_table1_of_runs_and_of_saved_models_shows_the_random_relative_figure(tmp_path):
    run = {"name": "amn-a", "kind": "AMN", "experts": {"Pong": PONG_EXPERT},
           "history": [{"frames": 1_000_000, "games": {"Pong": PONG_AMN}}]}
    other = dict(run, name="amn-b", history=[{"frames": 2_000_000, "games": {"Pong": dict(PONG_AMN, mean=1.8)}}])
    assert report.rows(run)[0]["random_relative"] == pytest.approx(15.53, abs=0.01)
    side_by_side = report.comparison([run, other])
    # (1.8 + 20.2) / 36.7 = 60%
    assert "| Pong | 16.5 | -14.5 (-88%, 16%) | 1.8 (11%, 60%) |" in side_by_side
    # Through the SavedModels: a table of random-relative means beside the plain ratios.
    paths = [
        _eval_file(tmp_path, "expert", "saved_models/experts/Pong/1", {"Pong": (16.5, 21.0)}, kind="expert"),
        _eval_file(tmp_path, "random", None, {"Pong": (-20.2, -18.0)}, random_policy=True),
        _eval_file(tmp_path, "amn", "runs/exports/amn/amn-cpu/1", {"Pong": (-14.5, -9.0)}),
    ]
    text = report.saved_model_table([item for path in paths for item in report.load_eval(path)])
    assert "| Pong | -20.2 | 16.5 (21) | 30 | -14.5 (-9) | -88% / -43% |" in text
    assert "| game | amn-cpu/1 (mean - random) / (expert - random) |" in text
    assert "| Pong | 16% |" in text
    # No random play evaluated: no random-relative table.
    text = report.saved_model_table([item for path in paths[::2] for item in report.load_eval(path)])
    assert "(mean - random) / (expert - random)" not in text


def _ranking(init, rows):
    return {"game": "Breakout", "init": init, "path": f"rank_sources-{init}.json",
            "ranking": [{"source": s, "zero_shot_gain": g, "feature_overlap": o} for s, g, o in rows]}


def test_related_sources_need_a_zero_shot_gain_and_feature_overlap_together():
    rows = _ranking("x", [("Pong", 0.61, 0.34), ("DemonAttack", 0.2, 0.6), ("Boxing", -0.1, 0.9),
                          ("Seaquest", 0.0, 0.7)])["ranking"]
    assert tables.related_sources(rows) == ["DemonAttack"]


def test_observed_transfer_by_frames_to_reach():
    assert report.observed_transfer(300_000, 400_000) == "faster"
    assert report.observed_transfer(400_000, None) == "faster"   # only the AMN init reached it
    assert report.observed_transfer(500_000, 400_000) == "slower"
    assert report.observed_transfer(None, 400_000) == "slower"
    assert report.observed_transfer(400_000, 400_000) == "same"
    assert report.observed_transfer(None, None) == "same"


def test_table2_puts_each_rankings_prediction_beside_the_runs():
    rankings = [  # amn-policy: Pong first but no related source (a warning); amn-feature likewise
        _ranking("amn-policy", [("Pong", 0.61, 0.34), ("CrazyClimber", 1.89, 0.22), ("Boxing", -0.17, 0.23),
                                ("Seaquest", -0.28, 0.23)]),
        _ranking("amn-feature", [("DemonAttack", -0.17, 0.37), ("Pong", -0.22, 0.28)]),
        _ranking("amn-other", [("Pong", 1.0, 0.9)]),  # no run from this init: not shown
    ]
    table = report.table2(report._group(RUNS), blocks=2, rankings=rankings)
    assert "### Breakout: `--mode=rank_sources` before training, against the runs" in table
    # amn-policy: the warning predicted no gain, but its mean curve reached 6 at 300k against
    # random init's 400k (faster); gap: (2-1, 5-3, 10-5, 18-12) = (1, 2, 5, 6) -> mean +3.5.
    assert _row(table, "amn-policy").startswith("| amn-policy | 2 |")  # Table 2's row stays
    lines = [line for line in table.splitlines() if line.startswith("| amn-policy | Pong")]
    assert lines == ["| amn-policy | Pong (+0.61, 0.34), CrazyClimber (+1.89, 0.22), Boxing (-0.17, 0.23) "
                     "| none | not faster (warning) | faster | +3.5 (per seed +5.5, +1.5) | no |"]
    # Per seed, against random init's run of the same seed: seed 0 (1, 6, 5, 10) -> +5.5,
    # seed 1 (1, -2, 5, 2) -> +1.5.
    # amn-feature: reached at 400k as random init did (same); gap (0, -2, -4, 3.5) -> -0.6: held;
    # per seed (0, -1, -3, -9) -> -3.25 and (0, -3, -5, 16) -> +2.0.
    lines = [line for line in table.splitlines() if line.startswith("| amn-feature | DemonAttack")]
    assert lines == ["| amn-feature | DemonAttack (-0.17, 0.37), Pong (-0.22, 0.28) | none "
                     "| not faster (warning) | same | -0.6 (per seed -3.2, +2.0) | yes |"]
    assert "amn-other" not in table
    # Without random-init runs there is nothing to hold the prediction against.
    no_random = [r for r in RUNS if r["init"] != "random"]
    assert "rank_sources` before training" not in report.table2(report._group(no_random), rankings=rankings)


def test_a_file_that_is_no_ranking_is_refused(tmp_path):
    bad = tmp_path / "eval.json"
    bad.write_text('{"results": []}')
    with pytest.raises(config_lib.ConfigError, match="is not a --mode=rank_sources --output_json file"):
        report.load_ranking(str(bad))
    good = tmp_path / "rank.json"
    good.write_text('{"target": "Breakout", "init": "amn:saved_models/amn/amn-policy/1", "random": 1.2, '
                    '"ranking": [{"source": "Pong", "zero_shot_gain": 0.6, "feature_overlap": 0.3}]}')
    assert report.load_ranking(str(good))["init"] == "amn-policy"


def test_init_labels_name_the_amn_once_and_read_older_exports_alike():
    """The label an init gets (run directory names, exports ``transfer/<Game>-<label>``, Table 2
    rows) carries ``amn-`` once; exports named before that (``Breakout-amn-amn-policy``) are read
    as the same label, so kept eval JSONs still join their runs' rows."""
    assert config_lib.init_label("amn:saved_models/amn/amn-policy/1") == "amn-policy"
    assert config_lib.init_label("amn:runs/cpu") == "amn-cpu"
    assert config_lib.init_label("random") == "random"
    for export_name in ("Breakout-amn-amn-policy", "Breakout-amn-policy"):
        assert config_lib.transfer_label(export_name, "Breakout") == "amn-policy"
    assert config_lib.transfer_label("Breakout-amn-cpu", "Breakout") == "amn-cpu"
    assert config_lib.transfer_label("Breakout-random", "Breakout") == "random"
    assert config_lib.transfer_label("Pong-random", "Breakout") is None
    evals = [{"name": "Breakout-amn-amn-policy/2", "results": {"Breakout": {"mean": 21.5}}},
             {"name": "random", "results": {"Breakout": {"mean": 1.4}}}]
    assert report.transfer_evals(evals) == ({"Breakout": 1.4}, {("Breakout", "amn-policy"): [{"mean": 21.5}]})


# ------------------------------------------------------------------ expert recipes
def _dqn(label, seed, scores, recipe=FAST, every=500_000):
    points = [((i + 1) * every, s) for i, s in enumerate(scores)]
    return {"game": "Pong", "name": f"{label}-seed{seed}", "label": label, "recipe": dict(recipe),
            "seed": seed, "dir": f"/runs/{label}-seed{seed}", "points": points,
            "history": _history(points, recipe)}


def test_recipe_table_times_each_recipe_on_its_seeds_mean_curve():
    runs = [_dqn("fast", 0, [-20.0, 5.0, 13.0, 16.0]),
            _dqn("fast", 1, [-20.0, -10.0, 10.0, 15.0]),   # mean -20, -2.5, 11.5, 15.5
            _dqn("fast-nstep1", 0, [-21.0, -20.0, -15.0, -5.0, 3.0], FAST | {"n_step": 1}),
            _dqn("fast-update2", 0, [-20.0, 12.0], FAST | {"update_period": 2})]
    groups = report.recipe_groups(runs)
    assert [label for label, _ in groups["Pong"]] == ["fast", "fast-nstep1", "fast-update2"]
    finals = report.saved_model_finals([
        {"name": "expert", "path": "a.json", "run_dir": "/runs/fast-seed0", "frames_trained": 2_000_000,
         "results": {"Pong": {"mean": 16.5, "episodes": 30}}},
        {"name": "expert", "path": "old.json", "run_dir": "/runs/fast-seed0", "frames_trained": 1_000_000,
         "results": {"Pong": {"mean": 3.0, "episodes": 30}}},   # an earlier export: the latest wins
        {"name": "expert", "path": "b.json", "run_dir": "/runs/fast-seed1", "frames_trained": 2_000_000,
         "results": {"Pong": {"mean": 14.5, "episodes": 30}}}])
    lines = report.recipe_table("Pong", groups["Pong"], (12.0, 15.0), finals)
    fast, nstep1, update2 = (_row("\n".join(lines), label) for label in ("fast", "fast-nstep1", "fast-update2"))
    cells = [c.strip() for c in fast.strip("|").split("|")]
    # Mean curve reaches 12 at 2.0M (seed 0 alone at 1.5M): 500,000 agent steps, the first
    # 20,000 before learning, one update per 4 after: 120,000 updates.
    assert cells[:5] == ["fast", "2", "reference", "2.00M (120,000) [1.50M, 2.00M]",
                         "2.00M (120,000) [2.00M, 2.00M]"]
    # Every run reached 1.0M (fast-update2's last): the seeds' test plays there, -2.5 on average.
    assert "test play at 1.00M" in lines[2]
    assert cells[5] == "-2.5" and cells[7] == "15.5 (16.5, 14.5), 30 episodes at 2.00M, 2.00M"
    assert "| n_step 1 (3) |" in nstep1 and "| not reached | not reached | -20.0 | 3.0 at 2.50M | - |" in nstep1
    # update period 2: 1.0M frames are (250,000 - 20,000) / 2 = 115,000 updates.
    assert "| update_period 2 (4) | 1.00M (115,000) | not reached | 12.0 |" in update2


def test_recipe_table_gives_the_hours_to_a_score_where_the_records_keep_them():
    runs = [_dqn("fast", 0, [-20.0, 5.0, 13.0]), _dqn("fast", 1, [-20.0, 12.0, 14.0]),
            _dqn("cpu", 0, [-20.0, -5.0, 12.0], FAST | {"n_step": 1})]
    for run, per_play in zip(runs, (3600.0, 1200.0, 3600.0)):  # seconds per 500k frames
        for index, record in enumerate(run["history"]):
            record["wall_seconds"] = (index + 1) * per_play
    del runs[2]["history"][2]["wall_seconds"]  # a test play recorded before they were kept
    lines = report.recipe_table("Pong", report.recipe_groups(runs)["Pong"], (12.0,))
    assert "h / min: training time by then" in lines[1]
    # Mean curve (-20, 8.5, 13.5) first >= 12 at 1.5M ((375,000 - 20,000) / 4 updates): seed 0
    # 3.0 h there, seed 1 1.0 h, 2.0 on average; per seed: seed 0 at 1.5M (3.0 h), seed 1 at
    # 1.0M (2,400 s: under an hour, in minutes).
    assert "| 1.50M (88,750; 2.0 h) [1.50M 3.0 h, 1.00M 40 min] |" in _row("\n".join(lines), "fast")
    assert "| 1.50M (88,750) |" in _row("\n".join(lines), "cpu")  # no hours: not kept there


def test_recipe_reach_score_defaults_to_90_percent_of_the_best_recipe():
    groups = report.recipe_groups([_dqn("fast", 0, [0.0, 20.0]), _dqn("slow", 0, [0.0, 4.0], FAST | {"n_step": 1})])
    assert report.recipe_reach_scores(groups["Pong"]) == ((18.0,), "90% of the best recipe's last test play "
                                                                   "(mean over its seeds)")


def test_recipe_table_when_a_run_first_evaluates_after_the_shared_frames():
    groups = report.recipe_groups([_dqn("short", 0, [1.0]),  # its last (only) test play at 500k
                                   _dqn("sparse", 0, [5.0, 9.0], FAST | {"n_step": 1}, every=1_000_000)])
    lines = report.recipe_table("Pong", groups["Pong"], (4.0,))  # 1.0M: (250,000 - 20,000) / 4 updates
    assert "| sparse | 1 | n_step 1 (3) | 1.00M (57,500) | - | 9.0 at 2.00M | - |" in "\n".join(lines)


def test_runs_recorded_before_the_dueling_flag_are_the_same_recipe_as_dueling_off(tmp_path):
    """Flags recorded before --dueling existed read as its old meaning (no dueling head): such a
    run groups with a new one without the head, apart from one with it, and its resume under the
    new flag is no recipe change."""
    import json

    recipe = {"n_step": 3, "update_period": 4, "learning_starts": 20_000, "seed": 0}
    runs = {"old": recipe, "new": recipe | {"dueling": False}, "duel": recipe | {"dueling": True}}
    dirs = []
    for name, flags in runs.items():
        run_dir = tmp_path / f"{name}-seed0"
        run_dir.mkdir()
        (run_dir / "run.json").write_text(json.dumps({"game": "Pong", "mode": "dqn"}))
        (run_dir / "flags.json").write_text(json.dumps(flags))
        (run_dir / "eval.jsonl").write_text(json.dumps({"frames": 400_000, "mean": -20.0}) + "\n")
        dirs.append(str(run_dir))
    history = [{"from_step": 0, "flags": recipe}, {"from_step": 50_000, "flags": runs["new"]},
               {"from_step": 90_000, "flags": runs["duel"]}]
    (tmp_path / "old-seed0" / "flags_history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    loaded = [report.load_dqn_run(d) for d in dirs]
    assert loaded[0]["recipe"]["dueling"] is False
    assert [[r["label"] for r in group] for _, group in report.recipe_groups(loaded)["Pong"]] == [["old", "new"], ["duel"]]
    assert loaded[0]["recipe_changes"] == [(90_000, {"dueling": (False, True)})]


def test_expert_runs_of_the_same_directory_name_are_refused(tmp_path):
    """Runs (and their kept records) are matched to their eval JSONs by directory name, so two
    runs of one name would share a SavedModel score: refused in one line."""
    import json

    dirs = []
    for parent in ("a", "b"):
        run_dir = tmp_path / parent / "Pong-seed0"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({"game": "Pong", "mode": "dqn"}))
        (run_dir / "flags.json").write_text(json.dumps({"seed": 0}))
        (run_dir / "eval.jsonl").write_text(json.dumps({"frames": 1000, "mean": -20.0, "max": -19.0,
                                                        "episodes": 1}) + "\n")
        dirs.append(str(run_dir))
    with pytest.raises(config_lib.ConfigError, match="several runs named Pong-seed0"):
        report.report_experts(dirs, str(tmp_path / "out"))
