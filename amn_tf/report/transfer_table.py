"""Table 2 of transfer runs (``table2.md``, ``transfer_curves.png``): grouped by target game and
setting label over seeds, the mean test score in each block of frames (best per column in bold),
the frames to reach a score against random init's, the SavedModels' scores, and each AMN init's
``--mode=rank_sources`` prediction against what its runs showed.

Each game's table is a list of columns (``Column``: header, alignment, and a function of one
init's ``Row`` giving its cell); ``columns`` lists them, so a new column is one cell function and
one entry there. What several cells need (block means, the reach score, the frames each init took
to reach it) is worked out once per game, in ``figures``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable

import numpy as np

from amn_tf import config as config_lib
from amn_tf import tables
from amn_tf.report import curves, plots
from amn_tf.report.records import EvalResult, Ranking, TransferRun, load_transfer_run

INTRO = ("# Table 2 at CPU scale\n",
         "Mean test score (epsilon 0.05, unclipped) of the evaluations in each block of "
         "frames (emulator frames), mean over seeds +- their standard deviation; best mean "
         "per column in bold. 'frames to reach': the first evaluation at which the seeds' "
         "mean test score is at or above the reach score, and its ratio to random init's "
         "(under 1: fewer frames than random init); 'stays above from': the first evaluation "
         "of the seeds' mean curve after which it never falls under the reach score, and its "
         "ratio to random init's (a reach that zero-shot play or one lucky test play cannot "
         "fake); 'per seed': each seed's own first evaluation at or above it ('-': never).\n")
FINALS_NOTE = ("'final, SavedModel': each seed's exported DQN evaluated afterwards "
               "(`--mode=eval --output_json`, --report_evals), mean over seeds of the "
               "per-seed means, with the per-seed means in brackets.\n")


def _group(transfer_runs) -> dict:
    """game -> init label -> the runs (seeds) of that setting."""
    groups = {}
    for run in map(TransferRun.of, transfer_runs):
        groups.setdefault(run.game, {}).setdefault(run.init, []).append(run)
    return groups


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
    for item in map(EvalResult.of, evals):
        if item.name == "random":
            random_play.update({g: r["mean"] for g, r in item.results.items()})
            continue
        export_name = item.name.split("/")[0]
        for game, result in item.results.items():
            label = config_lib.transfer_label(export_name, game)
            if label is not None:
                finals.setdefault((game, label), []).append(result)
    return random_play, finals


# ------------------------------------------------------------------ one game's figures
@dataclasses.dataclass
class Game:
    """What every row of one game's table is cut from: the runs by init, the blocks of frames,
    each init's block means and spread over seeds (and the best per block), the reach score
    and the frames each init's mean curve needed to reach it, the SavedModels' scores."""

    name: str
    by_init: dict
    blocks: int
    block_frames: float
    means: dict
    spreads: dict
    best: np.ndarray
    target: float
    why: str
    reached: dict
    stays: dict
    finals: dict  # (game, init) -> per-seed SavedModel results
    random_play: float | None


def figures(game, by_init, blocks, reach=None, saved_finals=None, random_play=None) -> Game:
    """One game's ``Game``: its last test play cut into ``blocks`` blocks of frames."""
    last = max(p[0] for runs in by_init.values() for r in runs for p in r.points)
    block_frames = last / blocks
    means, spreads = {}, {}
    with warnings.catch_warnings():  # a block no seed evaluated in stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        for init, runs in by_init.items():
            per_seed = np.asarray([curves.block_means(r.points, block_frames, blocks) for r in runs])
            means[init] = np.nanmean(per_seed, axis=0)
            spreads[init] = np.nanstd(per_seed, axis=0)
        best = np.nanmax(np.stack(list(means.values())), axis=0)
    target, why = reach_score(by_init, reach)
    mean_curves = {init: curves.mean_curve(runs) for init, runs in by_init.items()}
    reached = {init: curves.frames_to_reach(curve, target) for init, curve in mean_curves.items()}
    stays = {init: curves.frames_staying_above(curve, target) for init, curve in mean_curves.items()}
    return Game(game, by_init, blocks, block_frames, means, spreads, best, target, why, reached, stays,
                saved_finals or {}, (random_play or {}).get(game))


@dataclasses.dataclass
class Row:
    """One init's row of a game's table."""

    game: Game
    init: str

    @property
    def runs(self) -> list:
        return self.game.by_init[self.init]


# ------------------------------------------------------------------ the columns
@dataclasses.dataclass(frozen=True)
class Column:
    """A column of Table 2: its header, its Markdown alignment, its cell in an init's row and,
    for the columns that have one, its cell in the random-play row (None: "-")."""

    header: str
    align: str
    cell: Callable[[Row], str]
    random_play: Callable[[Game], str] | None = None


def _block_cell(index: int) -> Callable[[Row], str]:
    """Block ``index``'s mean over seeds (+- their spread with several seeds), bold if best."""
    def cell(row: Row) -> str:
        value = row.game.means[row.init][index]
        text = "-" if np.isnan(value) else f"{value:.1f}"
        if len(row.runs) > 1 and not np.isnan(value):
            text += f" +- {row.game.spreads[row.init][index]:.1f}"
        return f"**{text}**" if value == row.game.best[index] else text
    return cell


def _reach_cell(row: Row) -> str:
    frames = row.game.reached[row.init]
    return f"{frames:,.0f}" if frames is not None else "not reached"


def _ratio_to_random(init: str, frames_by_init: dict,
                     never: str = "< 1 (random init never reached it)") -> str:
    """``init``'s frames against random init's in ``frames_by_init`` ('-': random init itself,
    no random-init runs, or ``init`` never got there; ``never`` when only random init never did)."""
    frames = frames_by_init[init]
    if init == "random" or "random" not in frames_by_init or frames is None:
        return "-"
    if frames_by_init["random"] is None:
        return never
    return f"{frames / frames_by_init['random']:.2f}"


def _ratio_cell(row: Row) -> str:
    return _ratio_to_random(row.init, row.game.reached)


def _stays_cell(row: Row) -> str:
    frames = row.game.stays[row.init]
    if frames is None:
        return "not reached"
    ratio = _ratio_to_random(row.init, row.game.stays, "< 1: random init never stays above it")
    return f"{frames:,.0f}" + ("" if ratio == "-" else f" ({ratio})")


def _per_seed_cell(row: Row) -> str:
    return ", ".join(f"{f:,.0f}" if f is not None else "-"
                     for f in (curves.frames_to_reach(r.points, row.game.target) for r in row.runs))


def _final_cell(row: Row) -> str:
    finals = [r["mean"] for r in row.game.finals.get((row.game.name, row.init), [])]
    return f"{np.mean(finals):.1f} ({', '.join(f'{m:.1f}' for m in finals)})" if finals else "-"


def columns(game: Game) -> list:
    """The columns of one game's table, left to right."""
    blocks = [Column(f"{(i + 1) * game.block_frames / 1e6:.2f}M", "---:", _block_cell(i))
              for i in range(game.blocks)]
    listed = [Column("init", "---", lambda row: row.init),
              Column("seeds", "---:", lambda row: str(len(row.runs))), *blocks,
              Column("frames to reach", "---:", _reach_cell),
              Column("ratio to random init", "---:", _ratio_cell),
              Column("stays above from (ratio)", "---:", _stays_cell),
              Column("per seed", "---:", _per_seed_cell)]
    if any(g == game.name for g, _ in game.finals):
        listed.append(Column("final, SavedModel", "---:", _final_cell, lambda g: f"{g.random_play:.1f}"))
    return listed


def markdown(listed: list, game: Game) -> list:
    """The table's lines: header, alignment, a row per init (sorted), and random play's row
    where random play was evaluated and a column shows it."""
    def line(cells):
        return "| " + " | ".join(cells) + " |"

    lines = [line(c.header for c in listed), line(c.align for c in listed)]
    lines += [line(c.cell(Row(game, init)) for c in listed) for init in sorted(game.by_init)]
    if game.random_play is not None and any(c.random_play for c in listed):
        lines.append(line(["random play"] + [c.random_play(game) if c.random_play else "-"
                                             for c in listed[1:]]))
    return lines


# ------------------------------------------------------------------ rank_sources against the runs
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
    mine, theirs = dict(curves.mean_curve(runs)), dict(curves.mean_curve(random_runs))
    shared = sorted(set(mine) & set(theirs))
    return float(np.mean([mine[f] - theirs[f] for f in shared])) if shared else float("nan")


PREDICTION_INTRO = (
    "Prediction: a warning (no source with a positive zero-shot gain and a feature overlap "
    f"above {tables.RELATED_OVERLAP}) predicts no faster learning than random init; a "
    "related source predicts faster. Observed: frames to reach the reach score against "
    "random init's; gap: mean over the run of the seeds' mean test score minus random "
    "init's (per seed: each seed's run against random init's run of the same seed, so a "
    "reader sees whether the seeds agree in sign).\n")


def _prediction_row(init, ranking, by_init, reached) -> str:
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
    return (f"| {init} | {first} | {', '.join(related) or 'none'} | {predicted} | {observed} "
            f"| {gap} | {'yes' if held else 'no'} |")


def prediction_lines(game, by_init, reached, rankings) -> list:
    """Table 2's companion: each AMN init's ``--mode=rank_sources`` ranking (made before any
    training) beside what its runs showed against random init."""
    mine = {r.init: r for r in map(Ranking.of, rankings) if r.game == game and r.init in by_init}
    if not mine or "random" not in by_init:
        return []
    lines = [f"\n### {game}: `--mode=rank_sources` before training, against the runs\n", PREDICTION_INTRO,
             "| init | first sources (zero-shot gain, feature overlap) | related sources | predicted "
             "| observed | gap to random init | prediction held |",
             "| --- | --- | --- | --- | --- | ---: | --- |"]
    return lines + [_prediction_row(init, mine[init].ranking, by_init, reached) for init in sorted(mine)]


# ------------------------------------------------------------------ the whole table
def _section(game: Game, rankings) -> list:
    """One game's part of Table 2: its heading, table, random play, prediction and notes."""
    lines = [f"## {game.name}: frames per block {game.block_frames:,.0f}; reach score {game.target:.1f} "
             f"({game.why})\n", *markdown(columns(game), game)]
    if game.random_play is not None:
        lines.append(f"\nRandom play (uniform legal actions): {game.random_play:.1f}.")
        if game.target <= game.random_play:
            lines.append(f"The reach score {game.target:.1f} is not above random play: frames to "
                         "reach it say nothing about learning (pass a higher --reach_score).")
    lines += prediction_lines(game.name, game.by_init, game.reached, rankings)
    lines += curves.update_notes(run for init in sorted(game.by_init) for run in game.by_init[init])
    return lines + [""]


def table2(groups, blocks=4, reach=None, random_play=None, saved_finals=None, rankings=()) -> str:
    """Table 2 of transfer runs grouped by ``_group``: a section per game (sorted)."""
    groups = {game: {init: [TransferRun.of(r) for r in runs] for init, runs in by_init.items()}
              for game, by_init in groups.items()}
    lines = list(INTRO) + ([FINALS_NOTE] if saved_finals else [])
    for game, by_init in sorted(groups.items()):
        lines += _section(figures(game, by_init, blocks, reach, saved_finals, random_play), rankings)
    return "\n".join(lines)


def report_transfer(run_dirs, config, evals, rankings) -> dict:
    """``table2.md`` and ``transfer_curves.png`` in ``config.output_dir`` from transfer runs."""
    groups = _group([load_transfer_run(d) for d in run_dirs])
    random_play, saved_finals = transfer_evals(evals)
    for ranking in rankings:
        if ranking.init not in groups.get(ranking.game, {}):
            print(f"[report] {ranking.path}: no transfer run of {ranking.game} from "
                  f"{ranking.init} among --report_runs; not shown")
    text = table2(groups, config.blocks, config.reach_score, random_play, saved_finals, rankings)
    path = os.path.join(config.output_dir, "table2.md")
    with open(path, "w") as handle:
        handle.write(text)
    plot_path = os.path.join(config.output_dir, "transfer_curves.png")
    plot_transfer(groups, plot_path, random_play, config.reach_score)
    print(text)
    print(f"[report] table: {path}\n[report] learning curves: {plot_path}")
    return {"table2": path, "transfer_plot": plot_path}


def plot_transfer(groups, path, random_play=None, reach=None) -> None:
    """Per game, each init's seeds' mean curve with its band, random play and the reach score."""
    panels = []
    for game in sorted(groups):
        target, _ = reach_score(groups[game], reach)
        lines = ([(random_play[game], {"color": "gray", "linestyle": "--", "label": "random play"})]
                 if random_play and game in random_play else [])
        panels.append(plots.Panel(
            f"{game}: transfer\n(mean over seeds, band: min-max)",
            [(f"{init} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", runs)
             for init, runs in sorted(groups[game].items())],
            lines + [plots.reach_line(target, f"reach score {target:.1f}")]))
    plots.seed_panels(panels, path, 5, 3.5)
