"""The transfer ablation (``--mode=report --report_ablation``): one row per transfer setting,
each against random init trained with the same recipe.

A setting is what a transfer run changed: its init (random, or an AMN and what happened to the
AMN's output layer), the AMN's temperature and source games (read from the AMN SavedModel's
``assets/amn_tf.json``, no TensorFlow), the target recipe (its learning flags, named by the
flagfile in ``flags/`` that sets them) and the budget. Runs that share all of these are seeds of
one row. Within a game and recipe every run is cut to the frames all of them reached, so rows
compare like budgets; the reach score is half random init's final score there (its last test
play, mean over seeds).

Per row: frames to the reach score of the seeds' mean curve and its ratio to random init's
(the goal: at most 0.5), each seed's own frames and ratio against the random-init run of the
same seed, the mean test score over the whole run (the area under the curve divided by its
length: every test play weighs the same), and the final SavedModel's score from the eval JSONs
(``--report_evals``) whose ``run_dir`` names the run.

Rows are made from finished runs (their last test play at their ``--training_steps``): a run cut
short (by a session's end, say) would otherwise cut every run of its recipe to its frames. Such a
run is listed under its recipe's rows with its test plays so far and, where it has already
reached the recipe's reach score, its frames and ratio against the random-init run of its seed.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np

from amn_tf import envs
from amn_tf.report import curves, plots
from amn_tf.report.records import (
    RECIPE_FLAGS,
    EvalResult,
    Record,
    TransferRun,
    load_transfer_run,
    run_name,
)


# ------------------------------------------------------------------ settings
def recipe_name(recipe: dict, flagfiles: dict) -> str:
    """The flagfile whose learning flags are ``recipe``'s (the one setting most of them wins),
    else the flags that differ from the first one's."""
    matches = [(len(flags), path) for path, flags in flagfiles.items()
               if flags and all(recipe.get(key) == value for key, value in flags.items())]
    if matches:
        return max(matches)[1]
    return ", ".join(f"{key}={value}" for key, value in sorted(recipe.items()) if value is not None)


def read_flagfile(path: str) -> dict:
    """The recipe flags (``RECIPE_FLAGS``) a flagfile sets, typed as flags.json holds them."""
    values = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line.startswith("--"):
                continue
            name, _, text = line[2:].partition("=")
            if not text and name.startswith("no") and name[2:] in RECIPE_FLAGS:
                values[name[2:]] = False
            elif name in RECIPE_FLAGS:
                values[name] = _typed(text) if text else True
    return values


def _typed(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def transfer_flagfiles(root: str = "flags") -> dict:
    return {path: read_flagfile(path) for path in sorted(glob.glob(os.path.join(root, "transfer*.flags")))}


def amn_of(init: str) -> dict:
    """The AMN's temperature and source games from ``<path>/assets/amn_tf.json`` (an AMN
    SavedModel), or unknown ones when the file is not on this machine."""
    path = init[len("amn:"):] if init.startswith("amn:") else None
    if path is None:
        return {"tau": "-", "sources": "-"}
    try:
        with open(os.path.join(path, "assets", "amn_tf.json")) as handle:
            metadata = json.load(handle)
    except (OSError, ValueError):
        return {"tau": "?", "sources": "?"}
    tau = metadata.get("provenance", {}).get("tau", "?")
    if tau == "auto" and isinstance(metadata.get("tau"), dict):
        values = metadata["tau"].values()
        tau = f"auto ({min(values):.2g}-{max(values):.2g})"
    games = metadata.get("games", [])
    return {"tau": str(tau), "sources": f"{len(games)}: {', '.join(sorted(games))}"}


@dataclasses.dataclass
class AblationRun(TransferRun):
    """A transfer run with its setting spelled out: the AMN's temperature and sources, the
    ``--init`` and output-layer flags, the recipe's flagfile, and every flag of the run."""

    tau: str = "-"
    sources: str = "-"
    init_flag: str = "random"
    output_layer: str = "keep"
    recipe_name: str = ""
    flags: dict = dataclasses.field(default_factory=dict)


def load(run_dir: str, flagfiles: dict) -> AblationRun:
    run = load_transfer_run(run_dir)
    with open(os.path.join(run_dir, "run.json")) as handle:
        info = json.load(handle)
    with open(os.path.join(run_dir, "flags.json")) as handle:
        flags = json.load(handle)
    fields = {field.name: getattr(run, field.name) for field in dataclasses.fields(run)}
    return AblationRun(**fields, **amn_of(info["init"]), init_flag=info["init"],
                       output_layer=info.get("output_layer", "keep"),
                       recipe_name=recipe_name(run.recipe, flagfiles), flags=flags)


def finished(run: AblationRun) -> bool:
    """Whether the run's last test play is at its ``--training_steps`` (the budget it was given)."""
    budget = run.flags.get("training_steps")
    return budget is None or not run.history or run.history[-1].get("step", 0) >= budget


def setting_key(run: AblationRun) -> tuple:
    return (run.game, run.recipe_name, run.init, run.tau, run.sources)


# ------------------------------------------------------------------ figures
def cut(run: AblationRun, frames: int) -> AblationRun:
    """``run`` with its test plays up to ``frames``."""
    return dataclasses.replace(run, points=[p for p in run.points if p[0] <= frames])


def area_mean(points) -> float:
    """Mean test score over the run: every test play weighs the same."""
    return float(np.mean([score for _, score in points]))


def _ratio_text(frames, random_frames) -> str:
    if frames is None:
        return "not reached"
    if random_frames is None:
        return "< 1 (random never)"
    return f"{frames / random_frames:.2f}"


def final_scores(evals: list) -> dict:
    """run directory name -> the final SavedModel's mean, from eval payloads naming their run."""
    finals = {}
    for item in map(EvalResult.of, evals):
        if item.run_dir:
            for result in item.results.values():
                finals[run_name(item.run_dir)] = result["mean"]
    return finals


def command(runs: list) -> str:
    run = runs[0]
    seeds = ",".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed))
    layer = f" --init_output_layer={run.output_layer}" if run.output_layer != "keep" else ""
    flagfile = run.recipe_name if run.recipe_name.endswith(".flags") else "<flags above>"
    return (f"`--mode=transfer --flagfile={flagfile} --game={run.game} --init={run.init_flag}"
            f"{layer} --training_steps={run.flags.get('training_steps')} --seed={{{seeds}}}`")


@dataclasses.dataclass
class Row(Record):
    """One setting's row: its key (game, recipe, init, AMN tau, AMN sources), its runs and the
    text of each cell."""

    key: tuple
    runs: list
    seeds: int
    frames: str
    ratio: str
    stays: str
    per_seed: str
    area: str
    saved: str
    command: str


def _stays_text(curve, reach, random_stays, is_random) -> str:
    """Frames from which the seeds' mean ``curve`` stays at or above ``reach``, and the ratio to
    random init's (``random_stays``)."""
    if reach is None:
        return "-"
    stays = curves.frames_staying_above(curve, reach)
    text = "not reached" if stays is None else f"{stays / 1e6:.2f}M"
    return text if is_random or stays is None else f"{text} ({_ratio_text(stays, random_stays)})"


def _row(key, group, reach, random_frames, random_by_seed, finals, random_stays=None) -> Row:
    """One setting's row; with no random-init run of its recipe (``reach`` None) only its own
    figures (mean test score, SavedModel)."""
    curve = curves.mean_curve(group)
    frames = curves.frames_to_reach(curve, reach) if reach is not None else None
    per_seed = []
    for run in group:
        if reach is None:
            per_seed.append("-")
            continue
        own = curves.frames_to_reach(run.points, reach)
        ratio = ("" if key[2] == "random" or run.seed not in random_by_seed
                 else f" ({_ratio_text(own, random_by_seed[run.seed])})")
        per_seed.append(("-" if own is None else f"{own / 1e6:.2f}M") + ratio)
    areas = [area_mean(r.points) for r in group]
    saved = [finals.get(run_name(r.dir)) for r in group]
    known = [s for s in saved if s is not None]
    return Row(key, group, len(group),
               "-" if reach is None else "not reached" if frames is None else f"{frames / 1e6:.2f}M",
               "-" if key[2] == "random" or reach is None else _ratio_text(frames, random_frames),
               _stays_text(curve, reach, random_stays, key[2] == "random"),
               ", ".join(per_seed),
               f"{np.mean(areas):.1f} ({', '.join(f'{a:.1f}' for a in areas)})",
               (f"{np.mean(known):.1f} ({', '.join('-' if s is None else f'{s:.1f}' for s in saved)})"
                if known else "-"),
               command(group))


def frames_by_seed(runs: list, reach: float) -> dict:
    """seed -> frames of that seed's run to the reach score (None where it never got there)."""
    return {r.seed: curves.frames_to_reach(r.points, reach) for r in runs}


def rows(runs: list, finals: dict) -> tuple:
    """Rows of one game and recipe (random init first), the reach score and the budget."""
    budget = min(r.points[-1][0] for r in runs)
    runs = [cut(r, budget) for r in runs]
    settings = {}
    for run in runs:
        settings.setdefault(setting_key(run), []).append(run)
    random_runs = [r for r in runs if r.init == "random"]
    reach = random_frames = random_stays = None
    random_by_seed = {}
    if random_runs:
        reach = 0.5 * float(np.mean([r.points[-1][1] for r in random_runs]))
        random_curve = curves.mean_curve(random_runs)
        random_frames = curves.frames_to_reach(random_curve, reach)
        random_stays = curves.frames_staying_above(random_curve, reach)
        random_by_seed = frames_by_seed(random_runs, reach)
    table = [_row(key, sorted(group, key=lambda r: r.seed), reach, random_frames, random_by_seed, finals,
                  random_stays)
             for key, group in sorted(settings.items(), key=lambda item: (item[0][2] != "random", item[0]))]
    return table, reach, budget


def unfinished_lines(unfinished: list, table: list, reach) -> list:
    """Markdown lines listing runs cut short (not in ``table``'s rows): test plays so far and,
    against the reach score of the finished runs, where each first reached it."""
    if not unfinished:
        return []
    random_by_seed = (frames_by_seed([r for row in table if row.key[2] == "random" for r in row.runs], reach)
                      if reach is not None else {})
    lines = [("Unfinished (not in the rows above, which are made from finished runs):\n" if table else
              "Unfinished (the rows are made from finished runs, and this recipe has none yet):\n"),
             "| init | AMN tau | AMN sources | seed | frames so far (budget) | test plays so far | "
             "first at the reach score (ratio to random init, same seed) | command |",
             "| --- | --- | --- | ---: | ---: | --- | --- | --- |"]
    for run in sorted(unfinished, key=lambda r: (r.init, r.seed)):
        frames = run.points[-1][0] if run.points else 0
        budget = run.flags.get("training_steps", 0) * envs.FRAMES_PER_STEP
        plays = ", ".join(f"{score:.1f}" for _, score in run.points)
        if reach is None:
            first = "-"
        else:
            own = curves.frames_to_reach(run.points, reach)
            first = f"not by {frames / 1e6:.2f}M" if own is None else f"{own / 1e6:.2f}M"
            if own is not None and run.seed in random_by_seed:
                first += f" ({_ratio_text(own, random_by_seed[run.seed])})"
        lines.append(f"| {run.init} | {run.tau} | {run.sources} | {run.seed} | {frames / 1e6:.2f}M "
                     f"({budget / 1e6:.2f}M) | {plays or '-'} | {first} | {command([run])} |")
    return lines + [""]


def random_play(evals: list) -> dict:
    """game -> random play's mean, from the eval payloads of ``--random_policy``."""
    return {game: result["mean"] for item in map(EvalResult.of, evals) if item.name == "random"
            for game, result in item.results.items()}


def markdown(by_recipe: dict, random_means: dict | None = None, unfinished: dict | None = None) -> str:
    lines = ["# Transfer ablation\n",
             "One row per setting: init (with the AMN output-layer treatment), the AMN's "
             "temperature and sources, the target recipe (the flagfile that sets its learning "
             "flags) and the budget; each against random init trained with the same recipe. "
             "Frames are emulator frames (4 per agent step; the paper's \"frames\" are agent steps). "
             "Reach score: half the random-init final score (last test play, mean over seeds) at "
             "the budget every run of that recipe reached. 'frames to reach': first test play of "
             "the seeds' mean curve at or above it; ratio to random init's (goal: at most 0.5); "
             "'stays above from': the first test play of that curve after which it never falls "
             "under the reach score again (one lucky early test play cannot fake it), and its ratio; "
             "per seed: each seed's own frames and its ratio to the random-init run of the same "
             "seed. 'mean test score': over every test play of the run (area under the curve "
             "over its length), mean over seeds (per seed). 'SavedModel': the final export over "
             "30 episodes (`--mode=eval --output_json`, matched by run directory), mean (per seed).\n"]
    unfinished = unfinished or {}
    for game, recipe in sorted(set(unfinished) - set(by_recipe)):
        lines.append(f"## {game}, recipe {recipe}: no finished run yet\n")
        lines += unfinished_lines(unfinished[(game, recipe)], [], None)
    for (game, recipe), (table, reach, budget) in sorted(by_recipe.items()):
        lines.append(f"## {game}, recipe {recipe}: budget {budget / 1e6:.2f}M frames"
                     + (f", reach score {reach:.1f}\n" if reach is not None else
                        ": no random-init run with this recipe yet (no reach score, no ratio)\n"))
        floor = (random_means or {}).get(game)
        if reach is not None and floor is not None and reach <= floor:
            lines.append(f"The reach score {reach:.1f} is not above random play ({floor:.1f}): at this "
                         "budget random init has not learned, and frames to reach it say nothing.\n")
        lines += ["| init | AMN tau | AMN sources | seeds | frames to reach | ratio to random "
                  "init | stays above from (ratio) | per seed (ratio) | mean test score | SavedModel | command |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"]
        for row in table:
            _, _, init, tau, sources = row.key
            lines.append(f"| {init} | {tau} | {sources} | {row.seeds} | {row.frames} | {row.ratio} | "
                         f"{row.stays} | {row.per_seed} | {row.area} | {row.saved} | {row.command} |")
        lines.append("")
        lines += unfinished_lines(unfinished.get((game, recipe), []), table, reach)
    return "\n".join(lines)


def plot(by_recipe: dict, path: str) -> None:
    """Per game and recipe, each setting's seeds' mean curve with its band and the reach score."""
    panels = [plots.Panel(f"{game}, {os.path.basename(recipe)}\n(mean over seeds, band: min-max)",
                          [(f"{row.key[2]} ({len(row.runs)} seed{'s' * (len(row.runs) > 1)})", row.runs)
                           for row in table],
                          [plots.reach_line(reach, f"reach score {reach:.1f}")] if reach is not None else [])
              for (game, recipe), (table, reach, _) in sorted(by_recipe.items()) if table]
    if panels:
        plots.seed_panels(panels, path, 6, 4)


def write(run_dirs, evals, output_dir: str, flag_root: str = "flags") -> dict:
    """ablation.md and ablation_curves.png in ``output_dir`` from transfer ``run_dirs`` (kept
    records) and eval payloads (``records.load_eval``)."""
    flagfiles = transfer_flagfiles(flag_root)
    runs = [load(d, flagfiles) for d in run_dirs]
    finals = final_scores(evals)
    groups, unfinished = {}, {}
    for run in runs:
        (groups if finished(run) else unfinished).setdefault((run.game, run.recipe_name), []).append(run)
    by_recipe = {key: rows(group, finals) for key, group in groups.items()}
    text = markdown(by_recipe, random_play(evals), unfinished)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "ablation.md")
    with open(path, "w") as handle:
        handle.write(text)
    plot_path = os.path.join(output_dir, "ablation_curves.png")
    plot(by_recipe, plot_path)
    print(text)
    print(f"[report] ablation: {path}\n[report] curves: {plot_path}")
    return {"ablation": path, "ablation_plot": plot_path}
