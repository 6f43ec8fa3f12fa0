"""Published tables rebuilt in-process from what the repository keeps (each run's records in
``<report dir>/runs/``, the eval JSONs, the rank_sources JSONs) with the inputs of their
``--mode=report`` invocation (``scripts/rebuild_docs.sh``): byte-identical to the committed file."""

import glob
import os

import pytest
from conftest import REPO_ROOT

from amn_tf import config as config_lib
from amn_tf import report

RESULTS = os.path.join(REPO_ROOT, "docs", "results")


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    """Tables name their sources relative to the repository, as the script's invocations do."""
    monkeypatch.chdir(REPO_ROOT)


def _committed(path: str) -> str:
    with open(path) as handle:
        return handle.read()


@pytest.mark.parametrize("game", ["Breakout", "RoadRunner"])
def test_table2_of_the_transfer_experiments(game):
    """``--report_blocks=6`` on the kept transfer records, the runs' and random play's eval
    JSONs and both AMNs' rankings: ``transfer-<Game>/table2.md`` to the byte."""
    root = f"docs/results/transfer-{game}"
    runs = [report.load_transfer_run(d) for d in sorted(glob.glob(f"{root}/runs/*"))]
    evals = [item for path in sorted(glob.glob(f"{root}/*-seed?-eval.json")) + [f"{root}/random-play-eval.json"]
             for item in report.load_eval(path)]
    rankings = [report.load_ranking(f"{root}/rank_sources-{amn}.json") for amn in ("amn-policy", "amn-feature")]
    random_play, saved_finals = report.transfer_evals(evals)
    text = report.table2(report._group(runs), 6, None, random_play, saved_finals, rankings)
    assert text == _committed(f"{root}/table2.md")


def _recipes(tmp_path, runs, evals) -> str:
    tmp_path.mkdir()
    written = report.report_experts(runs, str(tmp_path), [item for p in evals for item in report.load_eval(p)],
                                    (12.0, 15.0))
    with open(written["experts_table"]) as handle:
        return handle.read()


def test_expert_recipe_tables_of_the_pong_comparisons(tmp_path):
    """``--report_reach_scores=12,15`` on the kept Pong runs and their SavedModels' eval JSONs:
    the recipe comparison at 2.4M frames (two recipes, two seeds each, in the order
    scripts/recipe_compare.sh gives them) and the fast recipe's two seeds to 7M frames."""
    root = "docs/results/experts/recipes-Pong-2.4M"
    names = ["Pong-fast-seed0", "Pong-cpu-seed0", "Pong-fast-seed1", "Pong-cpu-seed1"]
    text = _recipes(tmp_path / "2.4M", [f"{root}/runs/{n}" for n in names], [f"{root}/{n}-eval.json" for n in names])
    assert text == _committed(f"{root}/experts.md")
    five, seven = "docs/results/experts/recipes-Pong-5M", "docs/results/experts/recipes-Pong-fast-7M"
    text = _recipes(tmp_path / "7M", [f"{five}/runs/Pong-fast-seed0", f"{seven}/runs/Pong-fast-seed1"],
                    [f"{five}/Pong-fast-seed0-eval.json", f"{seven}/Pong-fast-seed1-eval.json"])
    assert text == _committed(f"{seven}/experts.md")


def test_the_entry_writes_what_the_cli_invocation_wrote(tmp_path):
    """Through ``report.run`` (what ``--mode=report`` calls) with the flags of the 5M recipe
    table in docs/results/experts/recipes.md."""
    root = "docs/results/experts/recipes-Pong-5M"
    config = config_lib.ReportConfig(
        run_dirs=(f"{root}/runs/Pong-fast-seed0", f"{root}/runs/Pong-fast-seed1"), output_dir=str(tmp_path),
        evals=(f"{root}/Pong-fast-seed0-eval.json", f"{root}/Pong-fast-seed1-eval.json"), reach_scores=(12.0, 15.0))
    written = report.run(config)
    assert sorted(os.path.basename(p) for p in written.values()) == ["expert_curves.png", "experts.md",
                                                                     "recipe_curves.png"]
    assert _committed(written["experts_table"]) == _committed(f"{root}/experts.md")


def test_the_paper_readout_of_table1():
    """The seven paper-games runs with the kept records of the run that trained the Enduro expert,
    their eval JSONs and the experts' fresh-episode evals: ``table1_paper_readout.md``."""
    from amn_tf.report import readout

    root = "docs/results/table1/paper-games"
    names = ["amn-beta0-seed0", "amn-beta0-seed1", "amn-beta0.01-seed0", "amn-beta0.01-seed1",
             "amn-tau0.1-beta0-seed0", "mdqn", "mcdqn"]
    runs = [report.load_run(f"{root}/runs/{n}") for n in names]
    games = ["Boxing", "Breakout", "CrazyClimber", "Enduro", "Pong", "Seaquest"]
    paths = [f"{root}/{n}-eval.json" for n in names] + [
        f"docs/results/fresh-episodes/experts-{g}-1-fresh-eval.json" for g in games]
    evals = [item for path in paths for item in report.load_eval(path)]
    experts = [report.load_dqn_run("docs/results/experts/enduro/runs/Enduro-seed0")]
    text = "\n".join(readout.INTRO) + "\n" + readout.table(runs, experts, evals) + "\n"
    assert text == _committed(f"{root}/table1_paper_readout.md")
    assert "| Enduro | expert (Enduro-seed0) | 8 (1) | 383.8 | 521.8 | 445.2 (30, fresh) |" in text
