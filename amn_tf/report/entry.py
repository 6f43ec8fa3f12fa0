"""``--mode=report``'s entry: reads the inputs (bad ones refused before anything is written),
sorts the run directories by mode and hands each kind to its table."""

from __future__ import annotations

import glob
import os

from amn_tf import config as config_lib
from amn_tf.report import (
    ablation,
    amn_table,
    per_minute,
    readout,
    recipes,
    saved_models,
    transfer_table,
)
from amn_tf.report.records import load_dqn_run, load_eval, load_ranking, load_run, run_mode


def _run_dirs(config) -> list:
    """The run directories to report on (by default every runs/amn-* and runs/transfer-*)."""
    run_dirs = list(config.run_dirs) or sorted(glob.glob(os.path.join("runs", "amn-*"))
                                               + glob.glob(os.path.join("runs", "transfer-*")))
    if not run_dirs:
        raise config_lib.ConfigError("no runs to report: pass --report_runs=DIR[,DIR...]")
    for run_dir in run_dirs:
        if not os.path.isdir(run_dir):
            raise config_lib.ConfigError(f"run directory {run_dir} does not exist")
    return run_dirs


def _by_mode(run_dirs) -> tuple:
    """AMN and multitask runs, transfer runs and expert DQN runs; any other mode refused."""
    modes = {d: run_mode(d) for d in run_dirs}
    amn_dirs = [d for d in run_dirs if modes[d] in ("amn", "multitask_dqn")]
    transfer_dirs = [d for d in run_dirs if modes[d] == "transfer"]
    dqn_dirs = [d for d in run_dirs if modes[d] == "dqn"]
    others = [d for d in run_dirs if d not in amn_dirs + transfer_dirs + dqn_dirs]
    if others:
        raise config_lib.ConfigError(f"cannot report on {', '.join(others)}: only dqn, amn, "
                                     "multitask_dqn and transfer runs")
    return amn_dirs, transfer_dirs, dqn_dirs


def run(config) -> dict:
    """Every table and plot ``config`` (a ``ReportConfig``) asks for; the paths written."""
    evals = [item for p in config.evals for item in load_eval(p)]  # bad JSON: before writing
    rankings = [load_ranking(p) for p in config.rankings]
    rates = per_minute.load_rates(config.rates) if config.rates else None
    if evals and not config.run_dirs:
        os.makedirs(config.output_dir, exist_ok=True)
        return saved_models.report_evals(evals, config.output_dir)
    amn_dirs, transfer_dirs, dqn_dirs = _by_mode(_run_dirs(config))
    if config.per_minute and not amn_dirs:
        raise config_lib.ConfigError("--report_per_minute compares AMN runs: none of --report_runs is one")
    if rankings and not transfer_dirs:
        raise config_lib.ConfigError("--report_rankings goes beside transfer runs: none of "
                                     "--report_runs is one")
    amn_runs = [load_run(d) for d in amn_dirs]
    if config.per_minute:
        for amn_run in amn_runs:  # a run without its setting's rate: refused before anything is written
            per_minute.rate_of(amn_run, rates)
    os.makedirs(config.output_dir, exist_ok=True)
    written = {}
    if amn_dirs:  # expert DQN runs beside AMN runs are the records of their experts
        written.update(amn_table.report_amn(amn_runs, config.output_dir))
        written["readout"] = readout.write(amn_runs, [load_dqn_run(d) for d in dqn_dirs], evals,
                                           os.path.join(config.output_dir, "table1_paper_readout.md"))
        print(f"[report] the paper's readout: {written['readout']}")
        if config.per_minute:
            written["per_minute"] = per_minute.write(amn_runs, os.path.join(config.output_dir, "amn_per_minute.md"),
                                                  rates)
            print(f"[report] distillation per minute: {written['per_minute']}")
    elif dqn_dirs:
        written.update(recipes.report_experts(dqn_dirs, config.output_dir, evals, config.reach_scores))
    if transfer_dirs and config.ablation:
        written.update(ablation.write(transfer_dirs, evals, config.output_dir))
    elif transfer_dirs:
        written.update(transfer_table.report_transfer(transfer_dirs, config, evals, rankings))
    if evals and amn_dirs:  # with transfer runs alone the evals went into Table 2
        written.update(saved_models.report_evals(evals, config.output_dir))
    return written
