"""Every curve the report draws, on one matplotlib set up once (the Agg back end, imported only
when a plot is drawn): the AMN runs' test plays per game (Table 1), the seeds' mean curves with
their min-max band (Table 2, the expert recipes, the transfer ablation), and the expert runs'
test plays per game."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np


@functools.cache
def pyplot():
    """matplotlib's pyplot on the Agg back end (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as module

    return module


def _grid(count: int, most: int, width: float, height: float):
    """A figure of ``count`` panels, at most ``most`` to a row; the unused panels hidden."""
    columns = min(most, count)
    rows = (count + columns - 1) // columns
    figure, axes = pyplot().subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[count:]:
        axis.axis("off")
    return figure, axes


def _save(figure, path, rect=None):
    """Laid out (within ``rect`` of the figure, when given), written, closed."""
    figure.tight_layout(rect=rect)
    figure.savefig(path, dpi=110)
    pyplot().close(figure)


def _finish(figure, axes, path):
    """The labels every curve panel of the report shares, then the PNG written and closed."""
    for axis in axes:
        axis.set_xlabel("frames (millions)")
        axis.set_ylabel("mean test return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    _save(figure, path)


def plot_seeds(axis, runs, color, label):
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


@dataclasses.dataclass
class Panel:
    """One panel of seeds' mean curves: (label, runs) per curve, in colours C0, C1, ...; then
    horizontal lines, each (y, matplotlib keyword arguments)."""

    title: str
    curves: list
    lines: list = dataclasses.field(default_factory=list)


def seed_panels(panels: list, path: str, width: float, height: float) -> None:
    """Panels side by side, each the seeds' mean curves with their band and its lines."""
    figure, axes = pyplot().subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        for index, (label, runs) in enumerate(panel.curves):
            plot_seeds(axis, runs, f"C{index}", label)
        for y, style in panel.lines:
            axis.axhline(y, **style)
        axis.set_title(panel.title, fontsize=10)
    _finish(figure, axes[0], path)


def reach_line(score: float, label: str | None = None) -> tuple:
    """The dotted black line of a reach score."""
    style = {"color": "black", "linestyle": ":", "linewidth": 1}
    return score, (style | {"label": label} if label else style)


def amn_curves(runs, path: str) -> None:
    """Table 1's curves: per game, each AMN or multitask run's test plays against frames per
    game, its expert's score dashed in the run's colour."""
    games = sorted({g for run in runs for g in run.experts})
    figure, axes = _grid(len(games), 4, 4, 3.2)
    for index, game in enumerate(games):
        axis = axes.flat[index]
        for run_index, run in enumerate(runs):
            if game not in run.experts:
                continue
            points = [(r["frames"], r["games"][game]["mean"]) for r in run.history if game in r["games"]]
            color = f"C{run_index}"
            axis.plot([p[0] / 1e6 for p in points], [p[1] for p in points], marker="o", color=color,
                      label=f"{run.kind} {run.name}")
            axis.axhline(run.experts[game]["mean"], linestyle="--", color=color, alpha=0.6,
                         label="expert" if run_index == 0 else None)
        axis.set_title(game)
        axis.set_xlabel("frames per game (millions)")
        axis.set_ylabel("mean test return")
        axis.grid(alpha=0.3)
    # One legend for the figure, below the panels: inside a panel, a run's long name (the main
    # job's is every game's) covered the curves and stretched the grid apart.
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = min(len(labels), 2)
    legend_rows = -(-len(labels) // columns)
    reserve = (0.22 * legend_rows + 0.15) / figure.get_figheight()
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    _save(figure, path, rect=(0, reserve, 1, 1))


def expert_curves(runs, path: str) -> None:
    """Expert DQN runs' test plays, one panel per game (their scores differ in scale)."""
    games = sorted({r.game for r in runs})
    figure, axes = _grid(len(games), 3, 4.5, 3.3)
    panels = dict(zip(games, axes.flat))
    for index, run in enumerate(runs):
        panels[run.game].plot([r["frames"] / 1e6 for r in run.history], [r["mean"] for r in run.history],
                              marker="o", color=f"C{index}", label=run.name)
    for game, axis in panels.items():
        axis.set_title(game)
    _finish(figure, list(panels.values()), path)
