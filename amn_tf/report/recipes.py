"""Expert DQN runs (``experts.md``, ``expert_curves.png``): every test play as a table and the
curves; where a game has several recipes or seeds, the recipes side by side (runs whose learning
flags agree are seeds of one recipe; each eval JSON names the run that trained its SavedModel)
and ``recipe_curves.png``."""

from __future__ import annotations

import json
import os

import numpy as np

from amn_tf import config as config_lib
from amn_tf.report import curves, plots
from amn_tf.report.curves import clock, millions
from amn_tf.report.records import RECIPE_FLAGS, EvalResult, ExpertRun, load_dqn_run, run_name


def recipe_groups(runs: list) -> dict:
    """game -> [(label, runs)] with one entry per recipe, in the order the runs were given
    (the first is the reference the others are compared with)."""
    games = {}
    for run in map(ExpertRun.of, runs):
        key = tuple(sorted((k, json.dumps(v)) for k, v in run.recipe.items()))
        games.setdefault(run.game, {}).setdefault(key, []).append(run)
    result = {}
    for game, by_key in games.items():
        entries = []
        for group in by_key.values():
            labels = list(dict.fromkeys(r.label for r in group))
            entries.append((" / ".join(labels), group))
        result[game] = entries
    return result


def recipe_difference(recipe: dict, reference: dict) -> str:
    """The recipe flags that differ from the reference's, as ``flag value (reference value)``."""
    changed = [f"{key} {recipe[key]} ({reference[key]})" for key in RECIPE_FLAGS
               if recipe.get(key) != reference.get(key)]
    return ", ".join(changed) or "-"


def _reach_text(recipe: dict, runs: list, frames) -> str:
    """'frames (updates; hours)' of the first test play at or above a score, the hours the mean
    of the seeds' own at those frames, given when every seed kept them."""
    hours = [curves.hours_at(run, frames) for run in runs]
    hours_text = f"; {clock(float(np.mean(hours)))}" if hours and None not in hours else ""
    return f"{millions(frames)} ({curves.updates_at(recipe, frames):,}{hours_text})"


def recipe_reach_scores(entries, scores=()) -> tuple:
    """The scores the recipe table times each recipe to, and why: the given ones, else 90% of
    the best recipe's last test play (mean over its seeds)."""
    if scores:
        return tuple(scores), "given (--report_reach_scores)"
    best = max(float(np.mean([r["points"][-1][1] for r in runs])) for _, runs in entries)
    return (0.9 * best,), "90% of the best recipe's last test play (mean over its seeds)"


def saved_model_finals(evals: list) -> dict:
    """name of the run that trained it -> the eval of its latest evaluated export (eval JSONs
    written since they carry ``run_dir`` and ``frames_trained``). Runs are matched by directory
    name, so a run's kept records (scripts/keep_records.sh) find its exports."""
    finals = {}
    for item in map(EvalResult.of, evals):
        if not item.run_dir or item.name != "expert":
            continue
        key = run_name(item.run_dir)
        if key not in finals or (item.frames_trained or 0) >= (finals[key].frames_trained or 0):
            finals[key] = item
    return finals


# ------------------------------------------------------------------ the recipe table
def _reach_cell(runs: list, target: float) -> str:
    """Frames (updates; hours) to the first test play of the seeds' mean curve at or above
    ``target``, with each seed's own frames (and hours) in brackets when there are several."""
    reached = curves.frames_to_reach(curves.mean_curve(runs), target)
    per_seed = []
    for run in runs:
        frames = curves.frames_to_reach(run.points, target)
        hours = None if frames is None else curves.hours_at(run, frames)
        per_seed.append("-" if frames is None else millions(frames) + (f" {clock(hours)}" if hours is not None else ""))
    text = _reach_text(runs[0].recipe, runs, reached) if reached is not None else "not reached"
    return f"{text} [{', '.join(per_seed)}]" if len(runs) > 1 else text


def _saved_cell(game: str, runs: list, finals: dict) -> str:
    """The runs' SavedModels' mean over seeds (each seed's in brackets), episodes, frames."""
    saved = [finals[r.name] for r in runs if r.name in finals and game in finals[r.name]["results"]]
    if not saved:
        return "-"
    means = [f["results"][game]["mean"] for f in saved]
    episodes = saved[0]["results"][game].get("episodes", "?")
    at = ", ".join(millions(f["frames_trained"]) for f in saved if f["frames_trained"])
    return (f"{np.mean(means):.1f}" + (f" ({', '.join(f'{m:.1f}' for m in means)})" if len(means) > 1 else "")
            + f", {episodes} episodes" + (f" at {at}" if at else ""))


def _recipe_header(game, entries, targets, why, common) -> list:
    reference_label = entries[0][0]
    reach_headers = " | ".join(f"first test play >= {t:g}: frames (updates; h) [per seed]" for t in targets)
    return [f"## {game}: {len(entries)} recipe(s); reference: {reference_label}\n",
            f"Reach scores: {', '.join(f'{t:g}' for t in targets)} ({why}). Frames are emulator "
            "frames (4 per agent step); updates: learner updates by then (one batch each, one per "
            "update_period agent steps after learning_starts); h / min: training time by then "
            "(wall-clock of the run loop, test plays included, on the host that trained it; given "
            "for runs whose records keep it). "
            "'test play at': each seed's last test play at or before the frames every run "
            "reached, mean over seeds.\n",
            f"| recipe | seeds | differs from {reference_label} (its value in brackets) | {reach_headers} "
            f"| test play at {millions(common)} | last test play | SavedModel, after training |",
            "| --- | ---: | --- | " + " | ".join("---" for _ in targets) + " | ---: | ---: | ---: |"]


def recipe_table(game, entries, scores=(), finals=None) -> list:
    """One game's recipes side by side: what differs from the first (the reference), the frames
    and learner updates to the first test play at or above each reach score (on the seeds'
    mean curve, and per seed), the test play at the frames every run reached, the last test
    play, and the exported SavedModel's score when an eval JSON of it was given."""
    entries = [(label, [ExpertRun.of(r) for r in runs]) for label, runs in entries]
    finals = finals or {}
    targets, why = recipe_reach_scores(entries, scores)
    reference = entries[0][1][0].recipe
    common = min(r.points[-1][0] for _, runs in entries for r in runs)
    lines = _recipe_header(game, entries, targets, why, common)
    for index, (label, runs) in enumerate(entries):
        cells = [_reach_cell(runs, target) for target in targets]
        at_common = [v for v in (curves.score_at(r.points, common) for r in runs) if v is not None]
        last_text = ", ".join(f"{s:.1f} at {millions(f)}" for f, s in (r.points[-1] for r in runs))
        difference = "reference" if index == 0 else recipe_difference(runs[0].recipe, reference)
        common_text = f"{np.mean(at_common):.1f}" if at_common else "-"  # evaluated only later
        lines.append(f"| {label} | {len(runs)} | {difference} | " + " | ".join(cells)
                     + f" | {common_text} | {last_text} | {_saved_cell(game, runs, finals)} |")
    return lines + curves.recipe_change_notes(run for _, runs in entries for run in runs)


def plot_recipes(groups, path, scores=()) -> None:
    plots.seed_panels([plots.Panel(f"{game}: recipes\n(mean over seeds, band: min-max)",
                                   [(f"{label} ({len(runs)} seed(s))", runs) for label, runs in groups[game]],
                                   [plots.reach_line(t) for t in recipe_reach_scores(groups[game], scores)[0]])
                       for game in sorted(groups)], path, 5.5, 3.6)


# ------------------------------------------------------------------ the expert runs' report
HISTORY_INTRO = ["# Expert DQN training\n", "Test play at epsilon 0.05 during training (mean and "
                 "max unclipped return over the evaluation's episodes).\n",
                 "| game | run | frames | eval mean | eval max | episodes |",
                 "| --- | --- | ---: | ---: | ---: | ---: |"]


def history_table(runs) -> list:
    """Every test play of every run, in the order the runs were given."""
    return HISTORY_INTRO + [f"| {run.game} | {run.name} | {record['frames']:,} | {record['mean']:.1f} | "
                            f"{record['max']:.1f} | {record['episodes']} |"
                            for run in runs for record in run.history]


def _load_experts(run_dirs) -> list:
    runs = [load_dqn_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # runs are told apart (and matched to their eval JSONs) by directory name
        raise config_lib.ConfigError(f"--report_runs has several runs named {', '.join(twice)}: "
                                     "give each run a directory of its own name")
    return runs


def _say_unmatched(evals, runs) -> None:
    names = {r.name for r in runs}
    unmatched = [e.path for e in evals if e.name == "expert" and run_name(e.run_dir or "") not in names]
    for path in dict.fromkeys(unmatched):
        print(f"[report] {path}: not an export of any of --report_runs (eval JSONs name the run "
              "that trained the SavedModel since this version); not shown")


def report_experts(run_dirs, output_dir, evals=(), reach_scores=()) -> dict:
    """Expert DQN runs: evaluation history as a table and learning curves; where a game has
    several recipes or seeds, the recipe comparison (``recipe_table``) and its curves."""
    runs, evals = _load_experts(run_dirs), [EvalResult.of(e) for e in evals]
    lines = history_table(runs) + curves.update_notes(runs)
    plot_path = os.path.join(output_dir, "expert_curves.png")
    plots.expert_curves(runs, plot_path)
    written = {"experts_table": os.path.join(output_dir, "experts.md"), "experts_plot": plot_path}
    compared = {g: e for g, e in recipe_groups(runs).items() if len(e) > 1 or any(len(r) > 1 for _, r in e)}
    finals = saved_model_finals(evals)
    _say_unmatched(evals, runs)
    if compared:
        lines.append("\n# Recipes compared\n")
        for game in sorted(compared):
            lines += recipe_table(game, compared[game], reach_scores, finals) + [""]
        written["recipe_plot"] = os.path.join(output_dir, "recipe_curves.png")
        plot_recipes(compared, written["recipe_plot"], reach_scores)
    with open(written["experts_table"], "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[report] table: {written['experts_table']}\n[report] learning curves: {plot_path}"
          + (f", {written['recipe_plot']}" if "recipe_plot" in written else ""))
    return written
