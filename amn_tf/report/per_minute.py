"""Distillation per minute (``amn_per_minute.md``): AMN runs of several settings, each trained for
the same minutes, compared by how much expert-level play their final test play shows, one row per
setting over its seeds.

Two ways to give every setting the same minutes: ``--train_minutes`` (fair only alone on the
machine: anything beside it takes minutes from one setting and not another), or a step budget
per setting from its rate measured alone (``benchmarks/amn_rate.py``: a rates JSON, given here
with ``--report_rates``), which learns the same whatever runs beside it, since the flags fix the
learner updates per agent step. A run trained by a step budget reads its minutes back through its
setting's rate (``minutes_for``), not through its wall clock.

A setting is the AMN flags in ``SETTING_FLAGS`` that differ from the first run's; the runs of one
setting differ only in ``--seed``. Per run: its training minutes (the loop's wall clock less its
test plays, ``test_play_seconds``), the frames per game and learner updates that bought, and per
game the final test play's mean against the run's experts (``experts.json``): the games at or
above 80% of the expert's mean, and the mean over games of the random-relative score
``(score - random) / (expert - random)`` capped at 100% (one game far above its expert cannot
hide another at random play).
"""

from __future__ import annotations

import json
import math

import numpy as np

from amn_tf import config as config_lib
from amn_tf import rundirs, tables
from amn_tf.report.records import AmnRun, without_seed

SETTING_FLAGS = ("batch_per_game", "update_period", "amn_learning_rate", "amn_learning_rate_end", "num_envs",
                 "amn_actor", "amn_expert_steps", "amn_epsilon", "amn_network", "tau", "beta", "amn_optimizer",
                 "amn_replay_capacity", "amn_learning_starts", "train_minutes")
# Budget flags every row's command names (the runs' values), beside the setting's own flags.
BUDGET_FLAGS = ("amn_steps", "amn_eval_period", "train_minutes")
EXPERT_LEVEL = 80.0  # % of the expert's mean
RATE_KEYS = ("probe_minutes", "probe_frames", "frames_per_second")


def frames_in(rate: dict, minutes: float) -> float:
    """Frames per game that ``minutes`` of training buy a setting alone on the machine that
    measured ``rate`` (an entry of a rates JSON): the frames its probe reached in its training
    minutes, then its steady frames/s from there on."""
    return rate["probe_frames"] + (minutes - rate["probe_minutes"]) * 60.0 * rate["frames_per_second"]


def minutes_for(rate: dict, frames: float) -> float:
    """``frames_in``'s inverse: the training minutes alone that ``frames`` per game took."""
    return rate["probe_minutes"] + (frames - rate["probe_frames"]) / (60.0 * rate["frames_per_second"])


def load_rates(path: str, given_as: str = "--report_rates") -> dict:
    """``{setting: rate}`` of a rates JSON (``benchmarks/amn_rate.py``), each rate checked;
    ``given_as`` names where the path came from in the error."""
    try:
        with open(path) as handle:
            rates = json.load(handle)["settings"]
        for name, rate in rates.items():
            if not all(isinstance(rate.get(k), (int, float)) for k in RATE_KEYS) or rate["frames_per_second"] <= 0:
                raise ValueError(f"setting {name!r} lacks a positive {', '.join(RATE_KEYS)}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise config_lib.ConfigError(f"{given_as}: {path} is not a rates JSON of "
                                     f"benchmarks/amn_rate.py ({error})") from None
    return rates


def rate_of(run: AmnRun, rates: dict | None) -> dict | None:
    """The measured rate a run's minutes are read through: its setting's, when it was trained by
    a step budget (no ``--train_minutes``) and rates were given; None otherwise."""
    if not rates or run.flags.get("train_minutes") is not None:
        return None
    name = without_seed(run.name)  # the sweep names its runs <setting>-seed<N>
    if name not in rates:
        raise config_lib.ConfigError(
            f"--report_rates: no rate for setting {name!r} (run {run.name}, trained by a step budget): "
            f"measure it alone with scripts/amn_sweep.sh rates (it has {', '.join(sorted(rates)) or 'none'})")
    return rates[name]


def training_minutes(history: list) -> float | None:
    """Minutes of training by the last test play: its ``wall_seconds`` less every test play's
    ``test_play_seconds``; None when the records do not keep both."""
    last = history[-1]
    if last.get("wall_seconds") is None or any("test_play_seconds" not in r for r in history):
        return None
    return (last["wall_seconds"] - sum(r["test_play_seconds"] for r in history)) / 60


def run_figures(run: AmnRun, rate: dict | None = None) -> dict:
    """A run's final test play read against its experts: per game % of expert and the capped
    random-relative score, the games at expert level and the mean capped score; its minutes
    through ``rate`` (its setting's, measured alone) when given, else its own clock."""
    final, per_game = run.final, {}
    for game, expert in run.experts.items():
        mean = final["games"][game]["mean"]
        relative = tables.random_relative(mean, expert["mean"], expert.get("random_mean"))
        per_game[game] = (tables.percent_of_expert(mean, expert["mean"]), min(relative, 100.0))
    capped = [relative for _, relative in per_game.values()]
    return {"per_game": per_game, "frames": final["frames"], "updates": final.get("updates"),
            "minutes": training_minutes(run.history) if rate is None else minutes_for(rate, final["frames"]),
            "alone_fps": None if rate is None else rate["frames_per_second"],
            "expert_level": sum(percent >= EXPERT_LEVEL for percent, _ in per_game.values()),
            "capped": float(np.mean(capped)) if not any(math.isnan(c) for c in capped) else float("nan")}


def settings(runs: list, rates: dict | None = None) -> list:
    """[(label, command flags, [(seed, run, figures)])], in the order the runs were given; the
    label names the flags that differ from the first run's ("reference" for its own). ``rates``:
    ``load_rates``'s, for runs trained by step budgets."""
    # runs recorded before a flag existed read it as what it meant then (rundirs.LATER_FLAGS)
    all_flags = [{**rundirs.LATER_FLAGS, **run.flags} for run in runs]
    reference = all_flags[0]
    groups: dict = {}
    for run, run_flags in zip(runs, all_flags):
        changed = {k: run_flags.get(k) for k in SETTING_FLAGS if run_flags.get(k) != reference.get(k)}
        key = json.dumps({k: run_flags.get(k) for k in SETTING_FLAGS}, sort_keys=True)
        label = ", ".join(f"{k} {v}" for k, v in changed.items()) or "reference"
        named = [k for k in BUDGET_FLAGS if run_flags.get(k) is not None] + [k for k in changed if k not in BUDGET_FLAGS]
        command = " ".join(f"--{k}={run_flags.get(k)}" for k in named)
        groups.setdefault(key, (label, command, []))[2].append((run_flags.get("seed", 0), run, run_figures(run, rate_of(run, rates))))
    return list(groups.values())


def _per_seed(values: list, text) -> str:
    mean = float(np.mean(values)) if values else float("nan")
    return f"{text(mean)} ({', '.join(text(v) for v in values)})" if len(values) > 1 else text(mean)


def _number(fmt: str):
    return lambda v: "-" if v is None or v != v else format(v, fmt)


def table(groups: list) -> str:
    rated = any(f["alone_fps"] is not None for _, _, members in groups for _, _, f in members)
    lines = ["| setting | seeds | training minutes | " + ("frames/s per game alone | " if rated else "")
             + "frames per game | learner updates | games at >= 80% of expert | mean random-relative, "
             "capped at 100% | command |",
             "| --- | ---: | ---: | " + ("---: | " if rated else "") + "---: | ---: | ---: | ---: | --- |"]
    for label, command, members in groups:
        figures = [f for _, _, f in members]
        minutes = [f["minutes"] for f in figures if f["minutes"] is not None]
        updates = [f["updates"] for f in figures if f["updates"] is not None]
        seeds = ",".join(str(s) for s, _, _ in members)
        rate = next((f["alone_fps"] for f in figures if f["alone_fps"] is not None), None)
        lines.append(
            f"| {label} | {len(members)} | {_per_seed(minutes, _number('.1f'))} | "
            + (f"{_number(',.0f')(rate)} | " if rated else "") +
            f"{_per_seed([f['frames'] for f in figures], _number(',.0f'))} | "
            f"{_per_seed(updates, _number(',.0f'))} | "
            f"{_per_seed([f['expert_level'] for f in figures], _number('.1f'))} | "
            f"{_per_seed([f['capped'] for f in figures], lambda v: tables.percent_text(v))} | "
            f"`--mode=amn {command} --seed={{{seeds}}}` |")
    return "\n".join(lines)


def game_table(groups: list) -> str:
    """Per game and setting: the final test play's % of the expert's mean, mean over seeds."""
    games = list(dict.fromkeys(g for _, _, members in groups for _, run, _ in members for g in run.experts))
    lines = ["| setting | " + " | ".join(games) + " |", "| --- |" + " ---: |" * len(games)]
    for label, _, members in groups:
        cells = []
        for game in games:
            values = [f["per_game"][game][0] for _, _, f in members if game in f["per_game"]]
            cells.append(tables.percent_text(float(np.mean(values))) if values else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(runs: list, path: str, rates: dict | None = None) -> str:
    groups = settings([AmnRun.of(r) for r in runs], rates)
    rated = any(f["alone_fps"] is not None for _, _, members in groups for _, _, f in members)
    how = ("(runs with `--train_minutes`: the run loop's wall clock less its test plays; runs trained "
           "by a step budget: the minutes those frames take alone at the setting's rate, measured alone "
           "on the machine by `benchmarks/amn_rate.py`, frames per game = probe frames + (minutes - "
           "probe minutes) x 60 x frames/s)" if rated else
           "(`--train_minutes`: the run loop's wall clock less its test plays)")
    text = "\n".join([
        "# Distillation per minute\n",
        f"AMN settings trained for the same training time {how}, "
        "each read at its final test play (epsilon 0.05, unclipped "
        "returns, mean over its test episodes per game) against its experts' reference scores. "
        "Games at >= 80% of expert: final mean at or above 80% of the expert's mean. Mean "
        "random-relative: over games, (score - random) / (expert - random), each capped at 100%. "
        "Per setting: mean over seeds (per seed in brackets). Frames are emulator frames (4 per "
        "agent step), per game.\n",
        table(groups), "",
        "## % of the expert's mean per game (mean over seeds)\n",
        game_table(groups), ""])
    with open(path, "w") as handle:
        handle.write(text)
    return path
