"""Table 1 read the paper's way (``table1_paper_readout.md``), beside the SavedModel scores.

The paper's Table 1 reads each model off its test plays during training: for the AMN, the mean
test score over its last 10% of training (epochs 91-100 of 100) and the highest test-play mean
it ever reached; for the expert DQN, the same over its last test plays. Both favour the model a
little (the max is a best-of-many), so this table sets them beside the score of the exported
SavedModel on fresh episodes (an eval stream no test play used) from the eval JSONs.

Per game, one row for the expert and one per AMN (or multitask DQN) run:

- test plays: how many the run recorded, and how many of the last ones the "last 10%" mean
  takes (``ceil(n / 10)``, at least one);
- mean of the last 10% of test plays, max test-play mean (an expert's only where the records of
  the run that trained it are given: ``--report_runs`` with its dqn run directory);
- the SavedModel's mean over its eval episodes, with how many and whether they were fresh;
- % of the expert, paper's way (last-10% means) and through the SavedModels, and the SavedModel's
  random-relative figure (model - random) / (expert - random).
"""

from __future__ import annotations

import math

from amn_tf import tables
from amn_tf.report.records import AmnRun, EvalResult, ExpertRun

INTRO = ("# Table 1, the paper's readout beside the SavedModels\n",
         "The paper reads Table 1 off the test plays made during training: the AMN's mean test "
         "score over its last 10% of test plays and its highest test-play mean, the expert's the "
         "same over its own test plays. Beside them, each exported SavedModel's mean over its eval "
         "episodes (\"fresh\": an eval stream that no test play of any run used). % of expert: "
         "last-10% mean against the expert's last-10% mean (the paper's way; \"-\" where the "
         "expert's training records are not given), and SavedModel against expert SavedModel; "
         "random-relative: (SavedModel - random) / (expert SavedModel - random). Test plays are "
         "8 episodes each at epsilon 0.05; every score is a mean unclipped episode return.\n")


def paper_readout(means: list) -> dict:
    """A run's test-play means (in order) read the paper's way: how many plays, how many of the
    last ones make its last 10% (``ceil(n / 10)``, at least one), their mean, and the highest
    test-play mean."""
    if not means:
        raise ValueError("no test plays to read")
    last = max(1, math.ceil(len(means) / 10))
    return {"plays": len(means), "last_plays": last, "last_mean": sum(means[-last:]) / last,
            "max": max(means)}


def _saved_model(evals: list, name: str, game: str):
    """``(result, stream)`` of the eval JSON that scored ``name``'s SavedModel on ``game`` (by the
    run it names, or ``expert``), one on fresh episodes first, or ``(None, None)``."""
    found = [(item.results[game], (item.episodes or {}).get("stream"))
             for item in map(EvalResult.of, evals)
             if game in item.results and name in (item.run_dir, item.name)]
    fresh = [pair for pair in found if pair[1] == "eval"]
    return (fresh or found or [(None, None)])[0]


def _expert_runs(expert_runs: list, evals: list) -> dict:
    """The expert run per game: the one the game's expert eval JSON names as its training run,
    else the only run of that game given."""
    by_game = {}
    for run in map(ExpertRun.of, expert_runs):
        by_game.setdefault(run.game, []).append(run)
    chosen = {}
    for game, runs in by_game.items():
        named = {(item.run_dir or "") for item in map(EvalResult.of, evals)
                 if item.name == "expert" and game in item.results}
        matching = [run for run in runs if run.name in named]
        if matching or len(runs) == 1:
            chosen[game] = (matching or runs)[0]
    return chosen


def _number(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _percent(mine, expert) -> str:
    return "-" if mine is None or expert is None else tables.percent_text(tables.percent_of_expert(mine, expert))


def _row(game, who, readout, saved, stream, expert) -> str:
    """One Markdown row; ``expert`` is the expert's row dict (None for the expert's own row)."""
    plays = "-" if readout is None else f"{readout['plays']} ({readout['last_plays']})"
    last = None if readout is None else readout["last_mean"]
    best = None if readout is None else readout["max"]
    saved_cell = "-" if saved is None else f"{saved['mean']:.1f} ({saved['episodes']}{', fresh' if stream == 'eval' else ''})"
    compared = ["", "", ""]  # the expert's own row compares with nothing
    if expert is not None:
        mean = None if saved is None else saved["mean"]
        compared = [_percent(last, expert["last"]), _percent(mean, expert["saved"]),
                    "-" if mean is None else tables.percent_text(
                        tables.random_relative(mean, expert["saved"], expert["random"]))]
    return (f"| {game} | {who} | {plays} | {_number(last)} | {_number(best)} | {saved_cell} | "
            + " | ".join(compared) + " |")


def table(runs, expert_runs=(), evals=()) -> str:
    """The readout table (see the module's docstring) for AMN/multitask ``runs``, the expert
    ``expert_runs`` whose test plays are kept, and the ``evals`` that scored the SavedModels."""
    runs = [AmnRun.of(r) for r in runs]
    evals = list(evals)
    experts = _expert_runs(list(expert_runs), evals)
    lines = ["| game | model | test plays (last 10%) | mean of last 10% | max test-play mean | "
             "SavedModel mean (episodes) | % of expert, paper's way | % of expert, SavedModels | "
             "(SavedModel - random) / (expert - random) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for game in sorted({g for run in runs for g in run.experts}):
        reference = next(r.experts[game] for r in runs if game in r.experts)
        expert_run = experts.get(game)
        readout = None if expert_run is None else paper_readout([m for _, m in expert_run.points])
        saved, stream = _saved_model(evals, "expert", game)
        if saved is None:  # the reference the runs measured the expert by (its stored test play)
            saved = reference
        lines.append(_row(game, "expert" + ("" if expert_run is None else f" ({expert_run.name})"),
                          readout, saved, stream, None))
        expert = {"last": None if readout is None else readout["last_mean"],
                  "saved": saved["mean"], "random": reference.get("random_mean")}
        for run in runs:
            if game not in run.experts:
                continue
            mine = paper_readout([record["games"][game]["mean"] for record in run.history])
            saved, stream = _saved_model(evals, run.name, game)
            lines.append(_row(game, f"{run.kind} {run.name}", mine, saved, stream, expert))
    return "\n".join(lines)


def write(runs, expert_runs, evals, path: str) -> str:
    """``table1_paper_readout.md`` at ``path``; the path."""
    with open(path, "w") as handle:
        handle.write("\n".join(INTRO) + "\n" + table(runs, expert_runs, evals) + "\n")
    return path
