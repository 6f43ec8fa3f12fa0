"""``--mode=report``: the paper's Tables 1 and 2, the expert recipes and learning curves from run
directories or their kept records (``scripts/keep_records.sh``), eval JSONs and rankings. No
TensorFlow: matplotlib and numpy only.

AMN runs (``run.json`` mode amn): each run's ``experts.json`` (expert scores measured under the
run's protocol) and ``eval.jsonl`` (AMN test plays) give ``table1.md`` and ``amn_curves.png``.
Transfer runs (mode transfer): grouped by target game and init over seeds, they give
``table2.md`` (mean test score in each block of frames, best per column in bold; frames to reach
a score; with ``--report_rankings``, each AMN init's rank_sources prediction against what its
runs showed) and ``transfer_curves.png`` (mean and spread over seeds); with
``--report_ablation``, the transfer ablation instead. Expert DQN runs (mode dqn): ``experts.md``
and the recipes compared; given beside AMN runs, expert runs are instead the records of their
experts for ``table1_paper_readout.md``. Eval JSONs alone: ``table1_saved_models.md``.

Table 1's columns, per game: random play's mean and the expert's mean and max (episode returns
of the expert's test play, random play beside it), AMN mean and max (the final test play of the
run), AMN mean as % of the expert's mean, the random-relative figure (AMN - random) / (expert -
random) where random play's mean is known, and the AMN's greedy-action agreement with the expert
on held-out expert states.

Modules: ``records`` (what is read, as typed records), ``curves`` (arithmetic on test-play
curves the tables share), one module per table (``amn_table``: Table 1 of AMN runs;
``transfer_table``: Table 2 and the rankings; ``saved_models``: Table 1 through the SavedModels;
``recipes``: the expert runs and recipes; ``ablation``: the transfer ablation; ``readout``: Table 1
read the paper's way, last 10% of test plays and max, beside the SavedModels; ``per_minute``:
AMN settings trained for the same minutes, with ``--report_per_minute``), ``plots`` (every
figure) and ``entry`` (``run``, what ``--mode=report`` calls).
"""

from amn_tf.report.amn_table import comparison, report_amn, rows
from amn_tf.report.curves import (
    block_means,
    frames_to_reach,
    hours_at,
    mean_curve,
    recipe_change_notes,
    score_at,
    update_notes,
    updates_at,
)
from amn_tf.report.entry import run
from amn_tf.report.recipes import (
    recipe_difference,
    recipe_groups,
    recipe_reach_scores,
    recipe_table,
    report_experts,
    saved_model_finals,
)
from amn_tf.report.records import (
    RECIPE_DEFAULTS,
    RECIPE_FLAGS,
    AmnRun,
    EvalResult,
    ExpertRun,
    Ranking,
    TransferRun,
    load_dqn_run,
    load_eval,
    load_ranking,
    load_run,
    load_transfer_run,
    run_mode,
)
from amn_tf.report.saved_models import (
    capped_line,
    random_relative_table,
    report_evals,
    saved_model_table,
    seed_groups,
)
from amn_tf.report.transfer_table import (
    _group,
    gap_to_random,
    observed_transfer,
    prediction_lines,
    reach_score,
    table2,
    transfer_evals,
)

__all__ = [
    "RECIPE_DEFAULTS", "RECIPE_FLAGS", "AmnRun", "EvalResult", "ExpertRun", "Ranking", "TransferRun",
    "_group", "block_means", "capped_line", "comparison", "frames_to_reach", "gap_to_random",
    "hours_at", "load_dqn_run", "load_eval", "load_ranking", "load_run", "load_transfer_run",
    "mean_curve", "observed_transfer", "prediction_lines", "random_relative_table", "reach_score",
    "recipe_change_notes", "recipe_difference", "recipe_groups", "recipe_reach_scores",
    "recipe_table", "report_amn", "report_evals", "report_experts", "rows", "run", "run_mode",
    "saved_model_finals", "saved_model_table", "score_at", "seed_groups", "table2",
    "transfer_evals", "update_notes", "updates_at",
]
