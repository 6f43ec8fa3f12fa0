"""Table 1 read the paper's way (``report.readout``): last 10% of test plays, max test-play mean,
beside the SavedModel's score on fresh episodes; checked against hand-computed figures."""

import pytest

from amn_tf.report import readout


def test_paper_readout_takes_the_last_tenth_rounded_up():
    means = [float(i) for i in range(1, 12)]  # 11 test plays: the last 10% is ceil(1.1) = 2 plays
    assert readout.paper_readout(means) == {"plays": 11, "last_plays": 2, "last_mean": 10.5, "max": 11.0}
    # Twenty plays: the last two; the max is the best test play wherever it came.
    means = [5.0] * 9 + [30.0] + [4.0] * 8 + [6.0, 8.0]
    assert readout.paper_readout(means) == {"plays": 20, "last_plays": 2, "last_mean": 7.0, "max": 30.0}
    assert readout.paper_readout([3.0])["last_mean"] == 3.0  # one play: itself
    with pytest.raises(ValueError):
        readout.paper_readout([])


def _amn(name, means):
    experts = {"Pong": {"mean": 20.0, "max": 21.0, "episodes": 30, "random_mean": -20.0}}
    history = [{"frames": 1000 * (i + 1), "games": {"Pong": {"mean": m, "max": m}}} for i, m in enumerate(means)]
    return {"name": name, "kind": "AMN", "experts": experts, "history": history}


def _eval(name, mean, run_dir=None, stream=None):
    return {"name": name, "results": {"Pong": {"game": "Pong", "mean": mean, "max": mean, "episodes": 30}},
            "run_dir": run_dir, "episodes": None if stream is None else {"stream": stream}}


def test_table_rows_by_hand():
    """Expert from its kept test plays and its fresh-episode eval (preferred to an older one);
    each AMN by its own test plays and the eval naming its run."""
    expert_run = {"name": "Pong-seed0", "game": "Pong", "seed": 0, "recipe": {}, "history": [],
                  "points": [(i, m) for i, m in enumerate([0.0, 10.0, 16.0, 12.0, 14.0, 18.0, 19.0, 20.0, 17.0, 16.0, 18.0])]}
    evals = [_eval("expert", 15.0, "Pong-seed0"), _eval("expert", 10.0, "Pong-seed0", stream="eval"),
             _eval("amn-a/1", 5.0, run_dir="amn-a")]
    text = readout.table([_amn("amn-a", [-20.0, 0.0, 8.0]), _amn("amn-b", [1.0])], [expert_run], evals)
    lines = text.splitlines()
    # Expert: 11 plays, last 2 = (16 + 18) / 2 = 17, max 20; its fresh eval (10.0), not the older 15.0.
    assert lines[2] == "| Pong | expert (Pong-seed0) | 11 (2) | 17.0 | 20.0 | 10.0 (30, fresh) |  |  |  |"
    # amn-a: last play 8 -> 8 / 17 = 47%; SavedModel 5 / 10 = 50%; (5 + 20) / (10 + 20) = 83%.
    assert lines[3] == "| Pong | AMN amn-a | 3 (1) | 8.0 | 8.0 | 5.0 (30) | 47% | 50% | 83% |"
    # amn-b: no eval names its run: SavedModel columns "-".
    assert lines[4] == "| Pong | AMN amn-b | 1 (1) | 1.0 | 1.0 | - | 6% | - | - |"


def test_table_without_expert_records_uses_the_runs_reference():
    """No expert run given: the expert's test-play columns are "-", its SavedModel score is the
    reference the runs measured it by (experts.json), and "paper's way" has nothing to compare."""
    text = readout.table([_amn("amn-a", [4.0, 10.0])], [], [_eval("amn-a/1", 0.0, run_dir="amn-a", stream="eval")])
    lines = text.splitlines()
    assert lines[2] == "| Pong | expert | - | - | - | 20.0 (30) |  |  |  |"
    assert lines[3] == "| Pong | AMN amn-a | 2 (1) | 10.0 | 10.0 | 0.0 (30, fresh) | - | 0% | 50% |"
