"""Table 1 of AMN and multitask DQN runs (``table1.md``, ``amn_curves.png``): each run's final
test play beside its experts' reference scores, and the runs side by side."""

from __future__ import annotations

import os

from amn_tf import tables
from amn_tf.report import plots
from amn_tf.report.records import AmnRun

INTRO = ("# Table 1 at CPU scale\n",
         "Expert, AMN and multitask-DQN (MDQN, MCDQN) test scores at epsilon 0.05 under "
         "each run's protocol (mean unclipped return over completed episodes). Each "
         "run: its final test play; (model - random) / (expert - random): the run's mean "
         "on the scale from random play (0%) to the expert (100%), where random play's mean "
         "was measured beside the expert's; agreement: the run's greedy action = the "
         "expert's on held-out expert states (AMN runs).\n")


def rows(run) -> list:
    """Table 1 rows of a run's final test play beside its ``experts.json`` (whose rows carry
    random play's mean where it was measured)."""
    run = AmnRun.of(run)
    return [tables.table_row(game, run.final["games"][game], expert) for game, expert in run.experts.items()]


def _cell(run: AmnRun, game: str, reference: dict) -> str:
    """A run's final mean on ``game``, its % of the expert and its random-relative figure."""
    if game not in run.experts:
        return "-"
    mean = run.final["games"][game]["mean"]
    relative = tables.random_relative(mean, reference["mean"], reference.get("random_mean"))
    return (f"{mean:.1f} ({tables.percent_text(tables.percent_of_expert(mean, reference['mean']))}, "
            f"{tables.percent_text(relative)})")


def comparison(runs) -> str:
    """Per game: the expert, then each run's final mean, % of expert and random-relative
    figure ((mean - random) / (expert - random), "-" where random play's mean is unknown)."""
    runs = [AmnRun.of(r) for r in runs]
    games = sorted({g for run in runs for g in run.experts})
    header = " | ".join(f"{r.kind} {r.name} ({r.final['frames'] / 1e6:g}M)" for r in runs)
    lines = ["## Side by side (final mean test score (% of expert, (score - random) / (expert - random)); "
             "frames per game in brackets)\n",
             f"| game | expert | {header} |", "| --- | ---: | " + " | ".join("---:" for _ in runs) + " |"]
    for game in games:
        reference = next(r.experts[game] for r in runs if game in r.experts)
        cells = [_cell(run, game, reference) for run in runs]
        lines.append(f"| {game} | {reference['mean']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_amn(runs, output_dir) -> dict:
    """``table1.md`` (the side-by-side comparison when there are several runs, then each run's
    own table) and ``amn_curves.png`` in ``output_dir``."""
    runs = [AmnRun.of(r) for r in runs]
    sections = list(INTRO)
    if len(runs) > 1:
        sections.append(comparison(runs) + "\n")
    for run in runs:
        sections.append(f"## {run.kind}: {run.name} ({run.final['frames']:,} frames per game)\n")
        sections.append(tables.table(rows(run), run.kind) + "\n")
    table_path = os.path.join(output_dir, "table1.md")
    with open(table_path, "w") as handle:
        handle.write("\n".join(sections))
    plot_path = os.path.join(output_dir, "amn_curves.png")
    plots.amn_curves(runs, plot_path)
    print("\n".join(sections))
    print(f"[report] table: {table_path}\n[report] learning curves: {plot_path}")
    return {"table": table_path, "plot": plot_path}
