"""``--mode=report``: the paper's Tables 1 and 2 and learning curves from run directories.

AMN runs (``run.json`` mode amn): each run's ``experts.json`` (expert scores measured
under the run's protocol) and ``eval.jsonl`` (AMN test plays) give ``table1.md`` and
``amn_curves.png``. Transfer runs (mode transfer): grouped by target game and init over
seeds, they give ``table2.md`` (mean test score in each block of frames, best per column
in bold; frames to reach a score; with ``--report_rankings``, each AMN init's rank_sources
prediction against what its runs showed) and ``transfer_curves.png`` (mean and spread over seeds).

Columns, per game: random play's mean and the expert's mean and max (episode returns of the
expert's test play, random play beside it), AMN mean and max (the final test play of the run),
AMN mean as % of the expert's mean, the random-relative figure (AMN - random) / (expert -
random) where random play's mean is known, and the AMN's greedy-action agreement with the
expert on held-out expert states.
"""

from __future__ import annotations

import glob
import json
import os
import re
import warnings

import numpy as np

from amn_tf import config as config_lib
from amn_tf import envs, runtime, tables


def _run_name(run_dir: str) -> str:
    return os.path.basename(os.path.normpath(run_dir))


def run_mode(run_dir: str) -> str:
    path = os.path.join(run_dir, "run.json")
    if not os.path.exists(path):
        raise config_lib.ConfigError(f"{run_dir} is not an amn_tf run directory (no run.json)")
    with open(path) as handle:
        return json.load(handle).get("mode", "?")


def load_run(run_dir: str) -> dict:
    experts_path = os.path.join(run_dir, "experts.json")
    history = runtime.read_jsonl(os.path.join(run_dir, "eval.jsonl"))
    if not os.path.exists(experts_path) or not history:
        raise config_lib.ConfigError(
            f"{run_dir} is not an AMN run with evaluations (needs experts.json and eval.jsonl)")
    with open(experts_path) as handle:
        experts = json.load(handle)
    with open(os.path.join(run_dir, "run.json")) as handle:
        info = json.load(handle)
    kind = "AMN" if info.get("mode") == "amn" else info.get("network", "?").upper()
    return {"name": _run_name(run_dir), "experts": experts,
            "history": history, "kind": kind}


def rows(run: dict) -> list:
    """Table 1 rows of a run's final test play beside its ``experts.json`` (whose rows carry
    random play's mean where it was measured)."""
    final = run["history"][-1]
    return [tables.table_row(game, final["games"][game], expert) for game, expert in run["experts"].items()]


def comparison(runs: list) -> str:
    """Per game: the expert, then each run's final mean, % of expert and random-relative
    figure ((mean - random) / (expert - random), "-" where random play's mean is unknown)."""
    games = sorted({g for run in runs for g in run["experts"]})
    header = " | ".join(f"{r['kind']} {r['name']} ({r['history'][-1]['frames'] / 1e6:g}M)"
                        for r in runs)
    lines = ["## Side by side (final mean test score (% of expert, (score - random) / (expert - random)); "
             "frames per game in brackets)\n",
             f"| game | expert | {header} |", "| --- | ---: | " + " | ".join("---:" for _ in runs) + " |"]
    for game in games:
        reference = next(r["experts"][game] for r in runs if game in r["experts"])
        expert = reference["mean"]
        cells = []
        for run in runs:
            if game not in run["experts"]:
                cells.append("-")
                continue
            mean = run["history"][-1]["games"][game]["mean"]
            relative = tables.random_relative(mean, expert, reference.get("random_mean"))
            cells.append(f"{mean:.1f} ({tables.percent_text(tables.percent_of_expert(mean, expert))}, "
                         f"{tables.percent_text(relative)})")
        lines.append(f"| {game} | {expert:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    games = sorted({g for run in runs for g in run["experts"]})
    columns = min(4, len(games))
    rows_count = (len(games) + columns - 1) // columns
    figure, axes = pyplot.subplots(rows_count, columns, figsize=(4 * columns, 3.2 * rows_count),
                                   squeeze=False)
    for index, game in enumerate(games):
        axis = axes[index // columns][index % columns]
        for run_index, run in enumerate(runs):
            if game not in run["experts"]:
                continue
            points = [(r["frames"], r["games"][game]["mean"]) for r in run["history"] if game in r["games"]]
            color = f"C{run_index}"
            axis.plot([p[0] / 1e6 for p in points], [p[1] for p in points], marker="o", color=color,
                      label=f"{run['kind']} {run['name']}")
            axis.axhline(run["experts"][game]["mean"], linestyle="--", color=color, alpha=0.6,
                         label="expert" if run_index == 0 else None)
        axis.set_title(game)
        axis.set_xlabel("frames per game (millions)")
        axis.set_ylabel("mean test return")
        axis.grid(alpha=0.3)
    for index in range(len(games), rows_count * columns):
        axes[index // columns][index % columns].axis("off")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


# ------------------------------------------------------------------ Table 2
def _dqn_run(run_dir: str, kind: str, plays: str) -> tuple:
    """What every DQN run's report reads (expert or transfer): ``run.json`` and, from
    ``flags.json`` and ``eval.jsonl``, its game, seed, recipe (``RECIPE_FLAGS``) and test plays;
    a run without any is refused as "<kind> run <dir> has no <plays> yet"."""
    with open(os.path.join(run_dir, "run.json")) as handle:
        info = json.load(handle)
    history = runtime.read_jsonl(os.path.join(run_dir, "eval.jsonl"))
    if not history:
        raise config_lib.ConfigError(f"{kind} run {run_dir} has no {plays} yet")
    with open(os.path.join(run_dir, "flags.json")) as handle:
        flags = json.load(handle)
    return info, {"game": info["game"], "seed": flags.get("seed", 0),
                  "recipe": {key: flags.get(key, RECIPE_DEFAULTS.get(key)) for key in RECIPE_FLAGS},
                  "points": [(r["frames"], r["mean"]) for r in history], "history": history}


def load_transfer_run(run_dir: str) -> dict:
    info, run = _dqn_run(run_dir, "transfer", "evaluations")
    init = config_lib.setting_label(info["init"], info.get("output_layer", "keep"))
    return {**run, "init": init, "name": f"{init}-seed{run['seed']}", "dir": run_dir}


def _group(transfer_runs):
    groups = {}
    for run in transfer_runs:
        groups.setdefault(run["game"], {}).setdefault(run["init"], []).append(run)
    return groups


def block_means(points, block_frames, blocks):
    """Mean test score of the evaluations falling in each block of ``block_frames``."""
    result = []
    for index in range(blocks):
        low, high = index * block_frames, (index + 1) * block_frames
        inside = [score for frames, score in points if low < frames <= high]
        result.append(float(np.mean(inside)) if inside else float("nan"))
    return result


def frames_to_reach(points, score):
    for frames, value in points:
        if value >= score:
            return frames
    return None


def mean_curve(runs) -> list:
    """The seeds' mean test score at each evaluation frame that every seed reached (runs of
    one recipe evaluate at the same frames), as (frames, mean) points."""
    lookups = [dict(r["points"]) for r in runs]
    shared = sorted(set.intersection(*(set(lookup) for lookup in lookups)))
    return [(f, float(np.mean([lookup[f] for lookup in lookups]))) for f in shared]


def reach_score(by_init, reach=None):
    """The score Table 2 times each init to, and why: ``reach`` if given, else half the
    random-init final score (its last test play, mean over seeds), else (no random-init runs)
    half the best final score among the inits."""
    if reach is not None:
        return reach, "given (--reach_score)"
    if "random" in by_init:
        final = float(np.mean([r["points"][-1][1] for r in by_init["random"]]))
        return 0.5 * final, f"half the random-init final score {final:.1f} (last test play, mean over seeds)"
    finals = [r["points"][-1][1] for runs in by_init.values() for r in runs]
    return 0.5 * max(finals), "half the best final score (no random-init runs)"


def transfer_evals(evals: list) -> tuple:
    """From ``--report_evals`` payloads: random play per game, and the final SavedModel
    scores per (game, init label) of exported transfer DQNs (``transfer/<Game>-<init>/<v>``)."""
    random_play, finals = {}, {}
    for item in evals:
        if item["name"] == "random":
            random_play.update({g: r["mean"] for g, r in item["results"].items()})
            continue
        export_name = item["name"].split("/")[0]
        for game, result in item["results"].items():
            label = config_lib.transfer_label(export_name, game)
            if label is not None:
                finals.setdefault((game, label), []).append(result)
    return random_play, finals


def _ratio(frames, random_frames, init, has_random) -> str:
    if init == "random" or not has_random or frames is None:
        return "-"
    if random_frames is None:
        return "< 1 (random init never reached it)"
    return f"{frames / random_frames:.2f}"


def load_ranking(path: str) -> dict:
    """A ``--mode=rank_sources --output_json`` file as target game, init label (as Table 2
    names the init) and the ranked sources."""
    try:
        with open(path) as handle:
            payload = json.load(handle)
        ranking = payload["ranking"]
        tables.related_sources(ranking)  # every row has the fields the prediction uses
        return {"game": payload["target"], "init": config_lib.init_label(payload["init"]),
                "ranking": ranking, "path": path}
    except (OSError, ValueError, KeyError, TypeError, config_lib.ConfigError) as error:
        raise config_lib.ConfigError(f"--report_rankings: {path} is not a --mode=rank_sources "
                                     f"--output_json file ({error})") from None


def observed_transfer(frames, random_frames) -> str:
    """What the runs showed against random init, by the frames each needed to reach the reach
    score (None: never): 'faster' (fewer frames, or only the AMN init reached it), 'slower'
    (more, or never where random init did) or 'same' (equal frames, or neither reached it)."""
    if frames is None and random_frames is None:
        return "same"
    if frames is None or random_frames is None:
        return "slower" if frames is None else "faster"
    return "faster" if frames < random_frames else "slower" if frames > random_frames else "same"


def gap_to_random(runs, random_runs) -> float:
    """Mean over the run of the seeds' mean test score minus random init's (at the
    evaluation frames both have)."""
    mine, theirs = dict(mean_curve(runs)), dict(mean_curve(random_runs))
    shared = sorted(set(mine) & set(theirs))
    return float(np.mean([mine[f] - theirs[f] for f in shared])) if shared else float("nan")


def prediction_lines(game, by_init, reached, rankings) -> list:
    """Table 2's companion: each AMN init's ``--mode=rank_sources`` ranking (made before any
    training) beside what its runs showed against random init."""
    mine = {r["init"]: r for r in rankings if r["game"] == game and r["init"] in by_init}
    if not mine or "random" not in by_init:
        return []
    lines = [f"\n### {game}: `--mode=rank_sources` before training, against the runs\n",
             "Prediction: a warning (no source with a positive zero-shot gain and a feature overlap "
             f"above {tables.RELATED_OVERLAP}) predicts no faster learning than random init; a "
             "related source predicts faster. Observed: frames to reach the reach score against "
             "random init's; gap: mean over the run of the seeds' mean test score minus random "
             "init's (per seed: each seed's run against random init's run of the same seed, so a "
             "reader sees whether the seeds agree in sign).\n",
             "| init | first sources (zero-shot gain, feature overlap) | related sources | predicted "
             "| observed | gap to random init | prediction held |",
             "| --- | --- | --- | --- | --- | ---: | --- |"]
    for init in sorted(mine):
        ranking = mine[init]["ranking"]
        related = tables.related_sources(ranking)
        first = ", ".join(f"{r['source']} ({r['zero_shot_gain']:+.2f}, {r['feature_overlap']:.2f})"
                          for r in ranking[:3])
        predicted = "faster" if related else "not faster (warning)"
        observed = observed_transfer(reached[init], reached["random"])
        held = (observed == "faster") == bool(related)
        gap = f"{gap_to_random(by_init[init], by_init['random']):+.1f}"
        random_by_seed = {r["seed"]: r for r in by_init["random"]}
        paired = [gap_to_random([r], [random_by_seed[r["seed"]]]) for r in by_init[init]
                  if r["seed"] in random_by_seed]
        if len(paired) > 1:
            gap += f" (per seed {', '.join(f'{g:+.1f}' for g in paired)})"
        lines.append(f"| {init} | {first} | {', '.join(related) or 'none'} | {predicted} | {observed} "
                     f"| {gap} | {'yes' if held else 'no'} |")
    return lines


def table2(groups, blocks=4, reach=None, random_play=None, saved_finals=None, rankings=()) -> str:
    random_play, saved_finals = random_play or {}, saved_finals or {}
    lines = ["# Table 2 at CPU scale\n",
             "Mean test score (epsilon 0.05, unclipped) of the evaluations in each block of "
             "frames (emulator frames), mean over seeds +- their standard deviation; best mean "
             "per column in bold. 'frames to reach': the first evaluation at which the seeds' "
             "mean test score is at or above the reach score, and its ratio to random init's "
             "(under 1: fewer frames than random init); 'per seed': each seed's own first "
             "evaluation at or above it ('-': never).\n"]
    if saved_finals:
        lines.append("'final, SavedModel': each seed's exported DQN evaluated afterwards "
                     "(`--mode=eval --output_json`, --report_evals), mean over seeds of the "
                     "per-seed means, with the per-seed means in brackets.\n")
    for game, by_init in sorted(groups.items()):
        last = max(p[0] for runs in by_init.values() for r in runs for p in r["points"])
        block_frames = last / blocks
        means, spreads = {}, {}
        with warnings.catch_warnings():  # a block no seed evaluated in stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            for init, runs in by_init.items():
                per_seed = np.asarray([block_means(r["points"], block_frames, blocks) for r in runs])
                means[init] = np.nanmean(per_seed, axis=0)
                spreads[init] = np.nanstd(per_seed, axis=0)
            best = np.nanmax(np.stack(list(means.values())), axis=0)
        target, why = reach_score(by_init, reach)
        reached = {init: frames_to_reach(mean_curve(runs), target) for init, runs in by_init.items()}
        header = " | ".join(f"{(i + 1) * block_frames / 1e6:.2f}M" for i in range(blocks))
        with_finals = any(g == game for g, _ in saved_finals)
        extra = " final, SavedModel |" if with_finals else ""
        lines += [f"## {game}: frames per block {block_frames:,.0f}; reach score {target:.1f} ({why})\n",
                  f"| init | seeds | {header} | frames to reach | ratio to random init | per seed |{extra}",
                  "| --- | ---: | " + " | ".join("---:" for _ in range(blocks)) + " | ---: | ---: | ---: |"
                  + (" ---: |" if with_finals else "")]
        for init in sorted(by_init):
            runs = by_init[init]
            cells = []
            for i, value in enumerate(means[init]):
                text = "-" if np.isnan(value) else f"{value:.1f}"
                if len(runs) > 1 and not np.isnan(value):
                    text += f" +- {spreads[init][i]:.1f}"
                cells.append(f"**{text}**" if value == best[i] else text)
            frames = reached[init]
            reach_text = f"{frames:,.0f}" if frames is not None else "not reached"
            ratio = _ratio(frames, reached.get("random"), init, "random" in reached)
            seeds = ", ".join(f"{f:,.0f}" if f is not None else "-"
                              for f in (frames_to_reach(r["points"], target) for r in runs))
            row = (f"| {init} | {len(runs)} | " + " | ".join(cells)
                   + f" | {reach_text} | {ratio} | {seeds} |")
            if with_finals:
                finals = [r["mean"] for r in saved_finals.get((game, init), [])]
                row += (f" {np.mean(finals):.1f} ({', '.join(f'{m:.1f}' for m in finals)}) |"
                        if finals else " - |")
            lines.append(row)
        if game in random_play:
            if with_finals:
                lines.append("| random play | - | " + " | ".join("-" for _ in range(blocks))
                             + f" | - | - | - | {random_play[game]:.1f} |")
            lines.append(f"\nRandom play (uniform legal actions): {random_play[game]:.1f}.")
            if target <= random_play[game]:
                lines.append(f"The reach score {target:.1f} is not above random play: frames to "
                             "reach it say nothing about learning (pass a higher --reach_score).")
        lines += prediction_lines(game, by_init, reached, rankings)
        lines += update_notes(run for init in sorted(by_init) for run in by_init[init])
        lines.append("")
    return "\n".join(lines)


def _plot_seeds(axis, runs, color, label):
    """The seeds' mean test score at every evaluation frame any of them reached, with the
    min-max band over seeds (several seeds only)."""
    frames = sorted({p[0] for r in runs for p in r["points"]})
    values = np.full((len(runs), len(frames)), np.nan)
    for row, run in enumerate(runs):
        lookup = dict(run["points"])
        values[row] = [lookup.get(f, np.nan) for f in frames]
    x = np.asarray(frames) / 1e6
    with warnings.catch_warnings():  # frames only some seeds reached
        warnings.simplefilter("ignore", RuntimeWarning)
        axis.plot(x, np.nanmean(values, 0), color=color, label=label)
        if len(runs) > 1:
            axis.fill_between(x, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.2)


def _finish(figure, axes, path):
    """The labels every curve panel of the report shares, then the PNG written and closed."""
    for axis in axes:
        axis.set_xlabel("frames (millions)")
        axis.set_ylabel("mean test return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    from matplotlib import pyplot

    pyplot.close(figure)


def plot_transfer(groups, path, random_play=None, reach=None):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    games = sorted(groups)
    figure, axes = pyplot.subplots(1, len(games), figsize=(5 * len(games), 3.5), squeeze=False)
    for axis, game in zip(axes[0], games):
        for index, (init, runs) in enumerate(sorted(groups[game].items())):
            _plot_seeds(axis, runs, f"C{index}", f"{init} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        if random_play and game in random_play:
            axis.axhline(random_play[game], color="gray", linestyle="--", label="random play")
        target, _ = reach_score(groups[game], reach)
        axis.axhline(target, color="black", linestyle=":", linewidth=1, label=f"reach score {target:.1f}")
        axis.set_title(f"{game}: transfer\n(mean over seeds, band: min-max)", fontsize=10)
    _finish(figure, axes[0], path)


def _named_eval(payload: dict, path: str) -> dict:
    """Who played one eval payload: ``expert``, ``random`` or ``<name>/<version>`` (from the
    SavedModel path ``<kind dir>/<name>/<version>``, e.g. amn/amn-cpu/1 -> amn-cpu/1)."""
    results = {r["game"]: r for r in payload["results"]}
    if payload.get("random_policy"):
        return {"path": path, "name": "random", "results": results}
    parts = os.path.normpath(payload.get("saved_model") or path).split(os.sep)
    # JSONs written before eval payloads carried "kind": experts live under experts/
    if (payload.get("kind") or ("expert" if "experts" in parts else "amn")) == "expert":
        name = "expert"
    else:
        name = "/".join(parts[-2:]) if len(parts) >= 2 and parts[-1].isdigit() else parts[-1]
    trained = {key: payload[key] for key in ("run_dir", "frames_trained") if key in payload}
    return {"path": path, "name": name, "results": results, **trained}


def load_eval(path: str) -> list:
    """An ``--mode=eval --output_json`` file (one payload, or a list from a fan-out eval):
    who played and the per-game results, one entry per payload."""
    try:
        with open(path) as handle:
            payload = json.load(handle)
        return [_named_eval(p, path) for p in (payload if isinstance(payload, list) else [payload])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise config_lib.ConfigError(
            f"{path} is not an eval JSON (write one with --mode=eval --output_json=FILE): {error}"
        ) from None


def saved_model_table(evals: list, bar: float = 90.0) -> str:
    """Table 1 through the SavedModels: per game, random and expert means, then every other
    evaluated model's mean (max) and its mean and max as % of the expert's (plain ratios, as
    in the paper's Table 1), with the games whose mean is at or above ``bar`` % counted per model;
    where random play was evaluated too, each model's random-relative mean
    (``random_relative_table``)."""
    by_name = {}
    for item in evals:
        by_name.setdefault(item["name"], {}).update(item["results"])
    others = [k for k in by_name if k not in ("expert", "random")]
    games = sorted({g for results in by_name.values() for g in results})
    header = "".join(f" {k} mean (max) | {k} % of expert (mean / max) |" for k in others)
    lines = ["| game | random mean | expert mean (max) | episodes |" + header,
             "| --- | ---: | ---: | ---: |" + " ---: | ---: |" * len(others)]

    def cell(result):
        return "-" if result is None else f"{result['mean']:.1f} ({result['max']:.0f})"

    met = {k: 0 for k in others}
    for game in games:
        random_result = by_name.get("random", {}).get(game)
        expert = by_name.get("expert", {}).get(game)
        episodes = sorted({r[game]["episodes"] for r in by_name.values() if game in r})
        random_cell = "-" if random_result is None else f"{random_result['mean']:.1f}"
        row = f"| {game} | {random_cell} | {cell(expert)} | {'/'.join(str(e) for e in episodes)} |"
        for key in others:
            mine = by_name[key].get(game)
            if mine is None or expert is None:
                row += f" {cell(mine)} | - |"
                continue
            percent = tables.percent_of_expert(mine["mean"], expert["mean"])
            if percent >= bar:
                met[key] += 1
            shown = " / ".join(tables.percent_text(tables.percent_of_expert(mine[k], expert[k]))
                               for k in ("mean", "max"))
            row += f" {cell(mine)} | {shown} |"
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


def seed_groups(evals: list) -> list:
    """Models named ``<label>-seed<N>/<version>`` grouped by label, as the paper's Table 1
    averages its independently trained AMNs: per game, the mean over seeds of each seed's
    mean and of each seed's max (episodes and capped episodes summed). Only labels with at
    least two seeds, as pseudo-evals named ``<label> (mean of K seeds)``."""
    members = {}
    for item in evals:
        match = re.fullmatch(r"(.+)-seed\d+(/\d+)?", item["name"])  # never expert, random
        if match:
            members.setdefault(match.group(1), []).append(item)
    groups = []
    for label, items in members.items():
        if len(items) < 2:
            continue
        games = set.intersection(*(set(i["results"]) for i in items))
        results = {}
        for game in sorted(games):
            rows = [i["results"][game] for i in items]
            results[game] = {"game": game, "mean": float(np.mean([r["mean"] for r in rows])),
                             "max": float(np.mean([r["max"] for r in rows])),
                             "episodes": sum(r["episodes"] for r in rows)}
            if all("capped" in r for r in rows):
                results[game]["capped"] = sum(r["capped"] for r in rows)
        groups.append({"path": ", ".join(i["path"] for i in items),
                       "name": f"{label} (mean of {len(items)} seeds)", "results": results})
    return groups


def report_evals(evals, output_dir) -> dict:
    """Table 1 through the SavedModels from loaded eval payloads (``load_eval``); models
    trained with several seeds (``seed_groups``) also get the table of their seed means."""
    text = ("# Table 1 through the SavedModels\n\n"
            "Each model evaluated with `--mode=eval --saved_model=... --output_json=...` "
            "(mean and max unclipped return over the episodes shown, epsilon 0.05 for models, "
            "uniform random actions for random). Sources: "
            + ", ".join(f"`{e['path']}`" for e in evals) + ".\n\n")
    groups = seed_groups(evals)
    if groups:
        references = [e for e in evals if e["name"] in ("expert", "random")]
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


def run(config) -> dict:
    evals = [item for p in config.evals for item in load_eval(p)]  # bad JSON: before writing
    rankings = [load_ranking(p) for p in config.rankings]
    if evals and not config.run_dirs:
        os.makedirs(config.output_dir, exist_ok=True)
        return report_evals(evals, config.output_dir)
    run_dirs = list(config.run_dirs) or sorted(glob.glob(os.path.join("runs", "amn-*"))
                                               + glob.glob(os.path.join("runs", "transfer-*")))
    if not run_dirs:
        raise config_lib.ConfigError("no runs to report: pass --report_runs=DIR[,DIR...]")
    for run_dir in run_dirs:
        if not os.path.isdir(run_dir):
            raise config_lib.ConfigError(f"run directory {run_dir} does not exist")
    modes = {d: run_mode(d) for d in run_dirs}
    amn_dirs = [d for d in run_dirs if modes[d] in ("amn", "multitask_dqn")]
    transfer_dirs = [d for d in run_dirs if modes[d] == "transfer"]
    dqn_dirs = [d for d in run_dirs if modes[d] == "dqn"]
    others = [d for d in run_dirs if d not in amn_dirs + transfer_dirs + dqn_dirs]
    if others:
        raise config_lib.ConfigError(f"cannot report on {', '.join(others)}: only dqn, amn, "
                                     "multitask_dqn and transfer runs")
    if rankings and not transfer_dirs:
        raise config_lib.ConfigError("--report_rankings goes beside transfer runs: none of "
                                     "--report_runs is one")
    os.makedirs(config.output_dir, exist_ok=True)
    written = {}
    if amn_dirs:
        written.update(report_amn([load_run(d) for d in amn_dirs], config.output_dir))
    if dqn_dirs:
        written.update(report_experts(dqn_dirs, config.output_dir, evals, config.reach_scores))
    if transfer_dirs and config.ablation:
        from amn_tf import ablation

        written.update(ablation.write(transfer_dirs, evals, config.output_dir))
    elif transfer_dirs:
        groups = _group([load_transfer_run(d) for d in transfer_dirs])
        random_play, saved_finals = transfer_evals(evals)
        for ranking in rankings:
            if ranking["init"] not in groups.get(ranking["game"], {}):
                print(f"[report] {ranking['path']}: no transfer run of {ranking['game']} from "
                      f"{ranking['init']} among --report_runs; not shown")
        text = table2(groups, config.blocks, config.reach_score, random_play, saved_finals, rankings)
        path = os.path.join(config.output_dir, "table2.md")
        with open(path, "w") as handle:
            handle.write(text)
        plot_path = os.path.join(config.output_dir, "transfer_curves.png")
        plot_transfer(groups, plot_path, random_play, config.reach_score)
        print(text)
        print(f"[report] table: {path}\n[report] learning curves: {plot_path}")
        written.update({"table2": path, "transfer_plot": plot_path})
    if evals and amn_dirs:  # with transfer runs alone the evals went into Table 2
        written.update(report_evals(evals, config.output_dir))
    return written


# ------------------------------------------------------------ expert recipes
# The flags that make a DQN recipe: runs of one game whose values agree on all of them are
# seeds of one recipe (budget, seed, paths, test-play and bookkeeping flags are not part of it).
RECIPE_FLAGS = ("protocol", "num_envs", "replay_capacity", "learning_starts", "update_period",
                "batch_size", "n_step", "target_update_period", "gamma", "epsilon_start",
                "epsilon_end", "epsilon_decay_steps", "optimizer", "learning_rate", "adam_epsilon",
                "double_dqn", "dueling", "reward_clip", "batch_loss", "precision")
RECIPE_DEFAULTS = runtime.LATER_FLAGS  # runs recorded before a flag existed read as its old meaning


def load_dqn_run(run_dir: str) -> dict:
    """An expert DQN run: its game, recipe (``RECIPE_FLAGS`` from ``flags.json``), seed and
    test plays; its label is the directory name without a trailing ``-seed<N>``."""
    _, run = _dqn_run(run_dir, "expert", "test plays")
    name = _run_name(run_dir)
    return {**run, "name": name, "label": re.sub(r"-seed[0-9]+$", "", name),
            "recipe_changes": runtime.flag_changes(run_dir, RECIPE_FLAGS, RECIPE_DEFAULTS)}


def recipe_groups(runs: list) -> dict:
    """game -> [(label, runs)] with one entry per recipe, in the order the runs were given
    (the first is the reference the others are compared with)."""
    games = {}
    for run in runs:
        key = tuple(sorted((k, json.dumps(v)) for k, v in run["recipe"].items()))
        games.setdefault(run["game"], {}).setdefault(key, []).append(run)
    result = {}
    for game, by_key in games.items():
        entries = []
        for group in by_key.values():
            labels = list(dict.fromkeys(r["label"] for r in group))
            entries.append((" / ".join(labels), group))
        result[game] = entries
    return result


def recipe_difference(recipe: dict, reference: dict) -> str:
    """The recipe flags that differ from the reference's, as ``flag value (reference value)``."""
    changed = [f"{key} {recipe[key]} ({reference[key]})" for key in RECIPE_FLAGS
               if recipe.get(key) != reference.get(key)]
    return ", ".join(changed) or "-"


def _millions(frames) -> str:
    return f"{frames / 1e6:.2f}M" if frames >= 100_000 else f"{frames:,}"


def updates_at(recipe: dict, frames: int) -> int:
    """Learner updates a DQN of ``recipe`` made by ``frames``: one per ``update_period`` agent
    steps after ``learning_starts``."""
    steps = frames // 4 - int(recipe.get("learning_starts") or 0)
    return max(0, steps) // int(recipe.get("update_period") or 4)


def hours_at(run: dict, frames) -> float | None:
    """Hours of training (the run loop's wall-clock, test plays included, summed over its
    invocations) by the test play at ``frames``; None when its records do not keep them."""
    seconds = [r.get("wall_seconds") for r in run["history"] if r["frames"] == frames]
    return seconds[0] / 3600 if seconds and seconds[0] is not None else None


def _clock(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def _reach_text(recipe: dict, runs: list, frames) -> str:
    """'frames (updates; hours)' of the first test play at or above a score, the hours the mean
    of the seeds' own at those frames, given when every seed kept them."""
    hours = [hours_at(run, frames) for run in runs]
    clock = f"; {_clock(float(np.mean(hours)))}" if hours and None not in hours else ""
    return f"{_millions(frames)} ({updates_at(recipe, frames):,}{clock})"


def score_at(points, frames):
    """The last test play at or before ``frames`` (None before the first)."""
    before = [score for f, score in points if f <= frames]
    return before[-1] if before else None


def recipe_reach_scores(entries, scores=()) -> tuple:
    """The scores the recipe table times each recipe to, and why: the given ones, else 90% of
    the best recipe's last test play (mean over its seeds)."""
    if scores:
        return tuple(scores), "given (--report_reach_scores)"
    best = max(float(np.mean([r["points"][-1][1] for r in runs])) for _, runs in entries)
    return (0.9 * best,), "90% of the best recipe's last test play (mean over its seeds)"


def saved_model_finals(evals: list) -> dict:
    """name of the run that trained it -> the eval results of its latest evaluated export
    (eval JSONs written since they carry ``run_dir`` and ``frames_trained``). Runs are matched
    by directory name, so a run's kept records (scripts/keep_records.sh) find its exports."""
    finals = {}
    for item in evals:
        run_dir, frames = item.get("run_dir"), item.get("frames_trained")
        if not run_dir or item["name"] != "expert":
            continue
        key = _run_name(run_dir)
        if key not in finals or (frames or 0) >= (finals[key]["frames_trained"] or 0):
            finals[key] = {"frames_trained": frames, "results": item["results"], "path": item["path"]}
    return finals


def recipe_table(game, entries, scores=(), finals=None) -> list:
    """One game's recipes side by side: what differs from the first (the reference), the frames
    and learner updates to the first test play at or above each reach score (on the seeds'
    mean curve, and per seed), the test play at the frames every run reached, the last test
    play, and the exported SavedModel's score when an eval JSON of it was given."""
    finals = finals or {}
    targets, why = recipe_reach_scores(entries, scores)
    reference_label, reference_runs = entries[0]
    reference = reference_runs[0]["recipe"]
    common = min(r["points"][-1][0] for _, runs in entries for r in runs)
    reach_headers = " | ".join(f"first test play >= {t:g}: frames (updates; h) [per seed]" for t in targets)
    lines = [f"## {game}: {len(entries)} recipe(s); reference: {reference_label}\n",
             f"Reach scores: {', '.join(f'{t:g}' for t in targets)} ({why}). Frames are emulator "
             "frames (4 per agent step); updates: learner updates by then (one batch each, one per "
             "update_period agent steps after learning_starts); h / min: training time by then "
             "(wall-clock of the run loop, test plays included, on the host that trained it; given "
             "for runs whose records keep it). "
             "'test play at': each seed's last test play at or before the frames every run "
             "reached, mean over seeds.\n",
             f"| recipe | seeds | differs from {reference_label} (its value in brackets) | {reach_headers} "
             f"| test play at {_millions(common)} | last test play | SavedModel, after training |",
             "| --- | ---: | --- | " + " | ".join("---" for _ in targets) + " | ---: | ---: | ---: |"]
    for index, (label, runs) in enumerate(entries):
        recipe = runs[0]["recipe"]
        cells = []
        for target in targets:
            reached = frames_to_reach(mean_curve(runs), target)
            per_seed = []  # (frames to the target, hours by then) per seed
            for r in runs:
                f = frames_to_reach(r["points"], target)
                per_seed.append((f, None if f is None else hours_at(r, f)))
            seeds = ", ".join("-" if f is None else _millions(f) + (f" {_clock(h)}" if h is not None else "")
                              for f, h in per_seed)
            text = _reach_text(recipe, runs, reached) if reached is not None else "not reached"
            cells.append(f"{text} [{seeds}]" if len(runs) > 1 else text)
        at_common = [v for v in (score_at(r["points"], common) for r in runs) if v is not None]
        last = [r["points"][-1] for r in runs]
        last_text = ", ".join(f"{s:.1f} at {_millions(f)}" for f, s in last)
        saved = [finals[r["name"]] for r in runs if r["name"] in finals and game in finals[r["name"]]["results"]]
        if saved:
            means = [f["results"][game]["mean"] for f in saved]
            episodes = saved[0]["results"][game].get("episodes", "?")
            at = ", ".join(_millions(f["frames_trained"]) for f in saved if f["frames_trained"])
            saved_text = (f"{np.mean(means):.1f}" + (f" ({', '.join(f'{m:.1f}' for m in means)})"
                                                     if len(means) > 1 else "")
                          + f", {episodes} episodes" + (f" at {at}" if at else ""))
        else:
            saved_text = "-"
        difference = "reference" if index == 0 else recipe_difference(recipe, reference)
        common_text = f"{np.mean(at_common):.1f}" if at_common else "-"  # evaluated only later
        lines.append(f"| {label} | {len(runs)} | {difference} | " + " | ".join(cells)
                     + f" | {common_text} | {last_text} | {saved_text} |")
    return lines + recipe_change_notes(run for _, runs in entries for run in runs)


def update_notes(runs) -> list:
    """A line per run whose learner did fewer updates by its last test play than an
    uninterrupted run of its recipe (``updates_at``), and why: updates skipped as non-finite,
    or steps played while a resume without the replay in the checkpoint refilled it
    (``learning_starts`` of them each time). Runs whose test plays do not record the updates
    (older runs) are named too: unknown, not equal."""
    short, unknown = [], []
    for run in runs:
        frames, last = run["points"][-1][0], run["history"][-1]
        done, expected = last.get("updates"), updates_at(run["recipe"], frames)
        if done is None:
            unknown.append(run["name"])
            continue
        missing = expected - done
        if missing > 0:
            skipped = min(last.get("skipped_updates", 0), missing)
            why = [f"{skipped:,} skipped as non-finite"] if skipped else []
            if missing > skipped:
                why.append(f"{missing - skipped:,} not made while a resume without its replay refilled it")
            short.append(f"- {run['name']}: {done:,} learner updates by {_millions(frames)} frames, "
                         f"{missing:,} ({missing / expected:.0%}) fewer than an uninterrupted run: "
                         f"{'; '.join(why)}")
    if unknown:
        short.append(f"- learner updates not recorded (runs from before they were): {', '.join(unknown)}")
    return ["", *short] if short else []


def recipe_change_notes(runs) -> list:
    """A line per run that was resumed with other recipe flags: it is grouped by its last
    invocation's recipe, which trained only the frames after the change."""
    notes = []
    for run in runs:
        for step, changed in run.get("recipe_changes", ()):
            what = ", ".join(f"{key} {after} (was {before})" for key, (before, after) in changed.items())
            notes.append(f"- {run['name']}: recipe changed on resuming at "
                         f"{_millions(step * envs.FRAMES_PER_STEP)} frames: {what}; the table groups "
                         "it by its last recipe")
    return ["", *notes] if notes else []


def plot_recipes(groups, path, scores=()):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    games = sorted(groups)
    figure, axes = pyplot.subplots(1, len(games), figsize=(5.5 * len(games), 3.6), squeeze=False)
    for axis, game in zip(axes[0], games):
        for index, (label, runs) in enumerate(groups[game]):
            _plot_seeds(axis, runs, f"C{index}", f"{label} ({len(runs)} seed(s))")
        for target in recipe_reach_scores(groups[game], scores)[0]:
            axis.axhline(target, color="black", linestyle=":", linewidth=1)
        axis.set_title(f"{game}: recipes\n(mean over seeds, band: min-max)", fontsize=10)
    _finish(figure, axes[0], path)


def report_experts(run_dirs, output_dir, evals=(), reach_scores=()) -> dict:
    """Expert DQN runs: evaluation history as a table and learning curves; where a game has
    several recipes or seeds, the recipe comparison (``recipe_table``) and its curves."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    runs = [load_dqn_run(d) for d in run_dirs]
    names = [r["name"] for r in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # runs are told apart (and matched to their eval JSONs) by directory name
        raise config_lib.ConfigError(f"--report_runs has several runs named {', '.join(twice)}: "
                                     "give each run a directory of its own name")
    lines = ["# Expert DQN training\n", "Test play at epsilon 0.05 during training (mean and "
             "max unclipped return over the evaluation's episodes).\n",
             "| game | run | frames | eval mean | eval max | episodes |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    games = sorted({r["game"] for r in runs})  # one panel per game: their scores differ in scale
    columns = min(3, len(games))
    rows_count = (len(games) + columns - 1) // columns
    figure, axes = pyplot.subplots(rows_count, columns, figsize=(4.5 * columns, 3.3 * rows_count),
                                   squeeze=False)
    panels = dict(zip(games, axes.flat))
    for index, run in enumerate(runs):
        history = run["history"]
        for record in history:
            lines.append(f"| {run['game']} | {run['name']} | {record['frames']:,} | {record['mean']:.1f} | "
                         f"{record['max']:.1f} | {record['episodes']} |")
        panels[run["game"]].plot([r["frames"] / 1e6 for r in history], [r["mean"] for r in history],
                                 marker="o", color=f"C{index}", label=run["name"])
    lines += update_notes(runs)
    for game, axis in panels.items():
        axis.set_title(game)
    for axis in axes.flat[len(games):]:
        axis.axis("off")
    plot_path = os.path.join(output_dir, "expert_curves.png")
    _finish(figure, list(panels.values()), plot_path)
    written = {"experts_table": os.path.join(output_dir, "experts.md"), "experts_plot": plot_path}
    groups = recipe_groups(runs)
    compared = {g: e for g, e in groups.items() if len(e) > 1 or any(len(r) > 1 for _, r in e)}
    finals = saved_model_finals(evals)
    unmatched = [e["path"] for e in evals if e["name"] == "expert"
                 and _run_name(e.get("run_dir") or "") not in {r["name"] for r in runs}]
    for path in dict.fromkeys(unmatched):
        print(f"[report] {path}: not an export of any of --report_runs (eval JSONs name the run "
              "that trained the SavedModel since this version); not shown")
    if compared:
        section = ["\n# Recipes compared\n"]
        for game in sorted(compared):
            section += recipe_table(game, compared[game], reach_scores, finals) + [""]
        lines += section
        recipe_plot = os.path.join(output_dir, "recipe_curves.png")
        plot_recipes(compared, recipe_plot, reach_scores)
        written["recipe_plot"] = recipe_plot
    table_path = written["experts_table"]
    with open(table_path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[report] table: {table_path}\n[report] learning curves: {plot_path}"
          + (f", {written['recipe_plot']}" if "recipe_plot" in written else ""))
    return written


def report_amn(runs, output_dir) -> dict:
    sections = ["# Table 1 at CPU scale\n",
                "Expert, AMN and multitask-DQN (MDQN, MCDQN) test scores at epsilon 0.05 under "
                "each run's protocol (mean unclipped return over completed episodes). Each "
                "run: its final test play; (model - random) / (expert - random): the run's mean "
                "on the scale from random play (0%) to the expert (100%), where random play's mean "
                "was measured beside the expert's; agreement: the run's greedy action = the "
                "expert's on held-out expert states (AMN runs).\n"]
    if len(runs) > 1:
        sections.append(comparison(runs) + "\n")
    for run in runs:
        frames = run["history"][-1]["frames"]
        sections.append(f"## {run['kind']}: {run['name']} ({frames:,} frames per game)\n")
        sections.append(tables.table(rows(run), run["kind"]) + "\n")
    table_path = os.path.join(output_dir, "table1.md")
    with open(table_path, "w") as handle:
        handle.write("\n".join(sections))
    plot_path = os.path.join(output_dir, "amn_curves.png")
    plot(runs, plot_path)
    print("\n".join(sections))
    print(f"[report] table: {table_path}\n[report] learning curves: {plot_path}")
    return {"table": table_path, "plot": plot_path}
