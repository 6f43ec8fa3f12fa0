"""``--mode=report``: the paper's Table 1 and learning curves from AMN run directories.

Reads each run's ``experts.json`` (expert scores measured under the run's protocol) and
``eval.jsonl`` (AMN test plays during training); writes ``table1.md`` and
``amn_curves.png`` into ``--report_dir``.

Columns, per game: expert mean and max (episode returns of the expert's test play), AMN
mean and max (the final test play of the run), AMN mean as % of the expert's mean, and
the AMN's greedy-action agreement with the expert on held-out expert states.
"""

from __future__ import annotations

import glob
import json
import os

from amn_tf import actor_mimic, runtime
from amn_tf import config as config_lib


def load_run(run_dir: str) -> dict:
    experts_path = os.path.join(run_dir, "experts.json")
    history = runtime.read_jsonl(os.path.join(run_dir, "eval.jsonl"))
    if not os.path.exists(experts_path) or not history:
        raise config_lib.ConfigError(
            f"{run_dir} is not an AMN run with evaluations (needs experts.json and eval.jsonl)")
    with open(experts_path) as handle:
        experts = json.load(handle)
    return {"name": os.path.basename(os.path.normpath(run_dir)), "experts": experts,
            "history": history}


def rows(run: dict) -> list:
    final = run["history"][-1]
    result = []
    for game, expert in run["experts"].items():
        mine = final["games"][game]
        result.append({"game": game, "expert_mean": expert["mean"], "expert_max": expert["max"],
                       "amn_mean": mine["mean"], "amn_max": mine["max"],
                       "percent": actor_mimic.percent_of_expert(mine["mean"], expert["mean"]),
                       "agreement": mine["agreement"]})
    return result


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
                      label=f"AMN {run['name']}")
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


def run(config) -> dict:
    run_dirs = list(config.run_dirs) or sorted(glob.glob(os.path.join("runs", "amn-*")))
    if not run_dirs:
        raise config_lib.ConfigError("no AMN runs to report: pass --report_runs=DIR[,DIR...]")
    for run_dir in run_dirs:
        if not os.path.isdir(run_dir):
            raise config_lib.ConfigError(f"run directory {run_dir} does not exist")
    runs = [load_run(d) for d in run_dirs]
    os.makedirs(config.output_dir, exist_ok=True)
    sections = ["# Table 1 at CPU scale\n",
                "Expert and AMN test scores at epsilon 0.05 under each run's protocol (mean "
                "unclipped return over completed episodes). AMN: its final test play; "
                "agreement: AMN greedy action = expert greedy action on held-out expert states.\n"]
    for run in runs:
        frames = run["history"][-1]["frames"]
        sections.append(f"## {run['name']} ({frames:,} frames per game)\n")
        sections.append(actor_mimic.table(rows(run)) + "\n")
    table_path = os.path.join(config.output_dir, "table1.md")
    with open(table_path, "w") as handle:
        handle.write("\n".join(sections))
    plot_path = os.path.join(config.output_dir, "amn_curves.png")
    plot(runs, plot_path)
    print("\n".join(sections))
    print(f"[report] table: {table_path}\n[report] learning curves: {plot_path}")
    return {"table": table_path, "plot": plot_path}
