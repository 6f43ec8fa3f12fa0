"""Table 1 through the SavedModels (``table1_saved_models.md``) from eval JSONs alone: per game,
random play, the expert and every other evaluated model as % of the expert; models trained
with several seeds averaged over them as the paper's Table 1; random-relative means where
random play was evaluated; episodes cut by the per-episode cap."""

from __future__ import annotations

import os
import re

import numpy as np

from amn_tf import tables
from amn_tf.report.records import EvalResult


def _by_name(evals) -> dict:
    by_name = {}
    for item in map(EvalResult.of, evals):
        by_name.setdefault(item.name, {}).update(item.results)
    return by_name


def _cell(result) -> str:
    return "-" if result is None else f"{result['mean']:.1f} ({result['max']:.0f})"


def _model_cells(mine, expert, bar) -> tuple:
    """A model's mean (max) and its mean / max as % of the expert's; whether it meets the bar."""
    if mine is None or expert is None:
        return f" {_cell(mine)} | - |", False
    percent = tables.percent_of_expert(mine["mean"], expert["mean"])
    shown = " / ".join(tables.percent_text(tables.percent_of_expert(mine[k], expert[k])) for k in ("mean", "max"))
    return f" {_cell(mine)} | {shown} |", percent >= bar


def saved_model_table(evals: list, bar: float = 90.0) -> str:
    """Table 1 through the SavedModels: per game, random and expert means, then every other
    evaluated model's mean (max) and its mean and max as % of the expert's (plain ratios, as
    in the paper's Table 1), with the games whose mean is at or above ``bar`` % counted per model;
    where random play was evaluated too, each model's random-relative mean
    (``random_relative_table``)."""
    by_name = _by_name(evals)
    others = [k for k in by_name if k not in ("expert", "random")]
    games = sorted({g for results in by_name.values() for g in results})
    header = "".join(f" {k} mean (max) | {k} % of expert (mean / max) |" for k in others)
    lines = ["| game | random mean | expert mean (max) | episodes |" + header,
             "| --- | ---: | ---: | ---: |" + " ---: | ---: |" * len(others)]
    met = {k: 0 for k in others}
    for game in games:
        random_result = by_name.get("random", {}).get(game)
        expert = by_name.get("expert", {}).get(game)
        episodes = sorted({r[game]["episodes"] for r in by_name.values() if game in r})
        random_cell = "-" if random_result is None else f"{random_result['mean']:.1f}"
        row = f"| {game} | {random_cell} | {_cell(expert)} | {'/'.join(str(e) for e in episodes)} |"
        for key in others:
            cells, meets = _model_cells(by_name[key].get(game), expert, bar)
            row += cells
            met[key] += meets
        lines.append(row)
    for key in others:
        lines.append(f"\n{key}: at least {bar:.0f}% of the expert on {met[key]} of "
                     f"{sum(1 for g in games if g in by_name[key])} games.")
    relative = random_relative_table(by_name, others, games)
    if relative:
        lines.append("\n" + relative)
    lines.append("\n" + capped_line(by_name))
    return "\n".join(lines)


def random_relative_table(by_name: dict, others: list, games: list) -> str:
    """Beside the plain ratios, each model's mean as (model - random) / (expert - random) per
    game (0%: plays like random, 100%: like the expert; "-" where random play or the expert
    was not evaluated on the game, or the expert is not above random). Empty if random play
    was evaluated on none of the games."""
    randoms = by_name.get("random", {})
    if not others or not any(game in randoms for game in games):
        return ""
    lines = ["Random-relative means, (model - random) / (expert - random): 0% plays like random, "
             "100% like the expert (unlike the plain ratio, meaningful where scores are negative, "
             "as in Pong):\n",
             "| game | " + " | ".join(f"{key} (mean - random) / (expert - random)" for key in others) + " |",
             "| --- |" + " ---: |" * len(others)]
    for game in games:
        expert = by_name.get("expert", {}).get(game)
        random_mean = randoms[game]["mean"] if game in randoms else None
        cells = []
        for key in others:
            mine = by_name[key].get(game)
            relative = (float("nan") if mine is None or expert is None
                        else tables.random_relative(mine["mean"], expert["mean"], random_mean))
            cells.append(tables.percent_text(relative))
        lines.append(f"| {game} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def capped_line(by_name: dict) -> str:
    """How many scored episodes hit the per-episode cap, per model; results written before
    test play counted capped episodes (and before it scored a fixed quota of episodes per
    emulator) are named as such."""
    counted, older = [], []
    for name, results in by_name.items():
        if all("capped" in r for r in results.values()):
            capped = sum(r["capped"] for r in results.values())
            episodes = sum(r["episodes"] for r in results.values())
            counted.append(f"{name} {capped} of {episodes}")
        else:
            older.append(name)
    text = "Episodes cut by the per-episode cap: " + (", ".join(counted) or "none counted") + "."
    if older:
        text += (" Measured by the older test play (first episodes to finish kept, capped "
                 "episodes not counted): " + ", ".join(older) + ".")
    return text


def _seed_means(label: str, items: list) -> EvalResult:
    """The pseudo-eval of one model's seeds: per game shared by all, the means over seeds."""
    games = set.intersection(*(set(i.results) for i in items))
    results = {}
    for game in sorted(games):
        rows = [i.results[game] for i in items]
        results[game] = {"game": game, "mean": float(np.mean([r["mean"] for r in rows])),
                         "max": float(np.mean([r["max"] for r in rows])),
                         "episodes": sum(r["episodes"] for r in rows)}
        if all("capped" in r for r in rows):
            results[game]["capped"] = sum(r["capped"] for r in rows)
    return EvalResult(f"{label} (mean of {len(items)} seeds)", results, ", ".join(i.path for i in items))


def seed_groups(evals: list) -> list:
    """Models named ``<label>-seed<N>/<version>`` grouped by label, as the paper's Table 1
    averages its independently trained AMNs: per game, the mean over seeds of each seed's
    mean and of each seed's max (episodes and capped episodes summed). Only labels with at
    least two seeds, as pseudo-evals named ``<label> (mean of K seeds)``."""
    members = {}
    for item in map(EvalResult.of, evals):
        match = re.fullmatch(r"(.+)-seed\d+(/\d+)?", item.name)  # never expert, random
        if match:
            members.setdefault(match.group(1), []).append(item)
    return [_seed_means(label, items) for label, items in members.items() if len(items) >= 2]


def report_evals(evals, output_dir) -> dict:
    """Table 1 through the SavedModels from loaded eval payloads (``load_eval``); models
    trained with several seeds (``seed_groups``) also get the table of their seed means."""
    evals = [EvalResult.of(e) for e in evals]
    text = ("# Table 1 through the SavedModels\n\n"
            "Each model evaluated with `--mode=eval --saved_model=... --output_json=...` "
            "(mean and max unclipped return over the episodes shown, epsilon 0.05 for models, "
            "uniform random actions for random). Sources: "
            + ", ".join(f"`{e.path}`" for e in evals) + ".\n\n")
    groups = seed_groups(evals)
    if groups:
        references = [e for e in evals if e.name in ("expert", "random")]
        text += ("## Averaged over seeds, as the paper's Table 1\n\nPer game, the mean over "
                 "seeds of each seed's mean and of each seed's max; 'episodes' counts every "
                 "seed's episodes.\n\n" + saved_model_table(references + groups)
                 + "\n\n## Every model\n\n")
    text += saved_model_table(evals) + "\n"
    path = os.path.join(output_dir, "table1_saved_models.md")
    with open(path, "w") as handle:
        handle.write(text)
    print(text)
    print(f"[report] SavedModel table: {path}")
    return {"saved_model_table": path}
