"""benchmarks/main_job.py's figures: the ETA read from progress lines and the fresh-episode table
against the experts, on hand-computed values (the script itself trains a whole main job)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import main_job  # noqa: E402


def test_eta_is_read_as_the_progress_line_prints_it():
    assert main_job.eta_seconds("[amn a+b] frames 8/16 (50%) | 900 frames/s | ETA 1h14m | eval 3") == 4440
    assert main_job.eta_seconds("| 900 frames/s | ETA 3m10s incl. 2 test plays | x") == 190
    assert main_job.eta_seconds("| ETA ? | x") is None and main_job.eta_seconds("no eta here") is None
    lines = [(10.0, "| ETA 5m00s | a"), (20.0, "| ETA 4m00s + 1 test play | b"), (70.0, "| ETA 1m00s incl. 1 test play")]
    # A test play's own progress line (during the final test play) is that play's ETA, not the run's.
    lines.append((300.0, "[amn a+b] test play of a: 3/8 episodes | frames 9,000 | 300 frames/s | ETA 0m20s | x"))
    # The line that leaves its untimed test play out is not held against the ETA ...
    assert main_job.eta_errors(lines, 310.0) == [(10.0, 300.0, 300.0), (70.0, 60.0, 240.0)]
    # ... unless the final test play's seconds are known: then against the training left before it
    # (310 - 50 - 20 = 240 s), as are lines with several test plays ahead never.
    lines.append((30.0, "| ETA 3m00s + 2 test plays | c"))
    assert main_job.eta_errors(lines, 310.0, 50.0) == [(10.0, 300.0, 300.0), (20.0, 240.0, 240.0),
                                                        (70.0, 60.0, 240.0)]


def test_the_final_test_plays_seconds_come_from_the_runs_last_record(tmp_path):
    assert main_job.final_play_seconds(str(tmp_path)) is None and main_job.final_play_seconds(None) is None
    (tmp_path / "eval.jsonl").write_text('{"step": 1, "test_play_seconds": 3.5}\n{"step": 2, "test_play_seconds": 119.7}\n')
    assert main_job.final_play_seconds(str(tmp_path)) == 119.7


def _eval(path, game, returns):
    path.write_text(json.dumps({"results": [{"game": game, "mean": sum(returns) / len(returns),
                                             "episodes": len(returns), "returns": returns}]}))


def test_score_table_against_the_experts(tmp_path):
    _eval(tmp_path / "Pong-expert.json", "Pong", [20.0, 20.0])
    _eval(tmp_path / "Pong-random.json", "Pong", [-20.0])
    amn = {"Pong": {"game": "Pong", "mean": 17.0, "episodes": 3, "returns": [16.0, 17.0, 18.0]}}
    text, rows = main_job.score_table(amn, str(tmp_path))
    (row,) = rows
    # 17 of 20: 85%; (17 + 20) / (20 + 20) = 92.5%; SE = sample std 1 / sqrt(3)
    assert row["percent"] == pytest.approx(85.0) and row["random_relative"] == pytest.approx(92.5)
    assert row["se"] == pytest.approx(3 ** -0.5)
    assert "| Pong | 17.0 +- 0.6 (3) | 20.0 | -20.0 | 85% | 92% |" in text
