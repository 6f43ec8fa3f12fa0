"""Table 1 figures as Markdown, and the rule by which ``--mode=rank_sources`` calls a source
related: free of TensorFlow, shared by the training modes (their progress and final lines,
the ranking's warning) and ``--mode=report``."""

from __future__ import annotations

import math

RELATED_OVERLAP = 0.5  # feature overlap above which a source with a positive zero-shot gain counts as related


def related_sources(ranking) -> list:
    """The sources of a ``--mode=rank_sources`` ranking that look related to the target: a
    positive zero-shot gain together with a feature overlap above ``RELATED_OVERLAP``. None
    related is the ranking's negative-transfer warning."""
    return [row["source"] for row in ranking
            if row["zero_shot_gain"] > 0 and row["feature_overlap"] > RELATED_OVERLAP]


def percent_of_expert(amn_score, expert_score) -> float:
    """AMN score as % of the expert's (plain ratio, as in the paper's Table 1)."""
    if expert_score == 0:
        return float("nan")
    return 100.0 * amn_score / expert_score


def mean_and_standard_error(result: dict) -> tuple:
    """(mean, standard error, episodes) of one game's eval result (``--mode=eval --output_json``):
    the SE from its ``returns`` (sample std / sqrt(n)), or from its ``std`` where an older JSON
    kept no returns."""
    returns = result.get("returns") or []
    n = len(returns) or result["episodes"]
    mean = sum(returns) / n if returns else result["mean"]
    variance = sum((r - mean) ** 2 for r in returns) / (n - 1) if len(returns) > 1 else result.get("std", 0.0) ** 2
    return result["mean"], math.sqrt(variance / n), n


def random_relative(score, expert_score, random_score) -> float:
    """``(score - random) / (expert - random)`` as a percentage: 0% plays like random, 100% like
    the expert (a Pong AMN at -14.5 against random -20.2 and expert 16.5: 15.5%, where the
    plain ratio says -88%). NaN where random play's mean is unknown (None, NaN) or the expert
    is not above it."""
    if random_score is None or random_score != random_score or not expert_score > random_score:
        return float("nan")
    return 100.0 * (score - random_score) / (expert_score - random_score)


def table(rows, kind: str = "AMN") -> str:
    """Per-game Table 1 figures as Markdown (``kind``: whose scores, e.g. AMN or MDQN;
    agreement is "-" where the run has none; random play's mean and the random-relative figure
    are "-" where it is unknown, as in rows recorded before they were kept)."""
    lines = [f"| game | random mean | expert mean | expert max | {kind} mean | {kind} max "
             f"| {kind} % of expert | ({kind} - random) / (expert - random) | agreement |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        agreement = row["agreement"]
        agreement = "-" if agreement != agreement else f"{100 * agreement:.0f}%"  # NaN: none
        random_mean = row.get("random_mean")
        random_cell = "-" if random_mean is None or random_mean != random_mean else f"{random_mean:.1f}"
        relative = row.get("random_relative", float("nan"))
        lines.append(f"| {row['game']} | {random_cell} | {row['expert_mean']:.1f} | {row['expert_max']:.1f} | "
                     f"{row['amn_mean']:.1f} | {row['amn_max']:.1f} | {percent_text(row['percent'])} | "
                     f"{percent_text(relative)} | {agreement} |")
    return "\n".join(lines)


def percent_text(percent: float) -> str:
    """``95%``, or ``-`` where there is no ratio (NaN: the expert scored 0, or random play's
    mean is unknown)."""
    return "-" if percent != percent else f"{round(percent)}%"  # round first: -0.4 is "0%", not "-0%"


def table_row(game: str, mine: dict, expert: dict) -> dict:
    """One Table 1 row: ``mine`` (mean, max, optional agreement) beside the expert's reference
    (mean, max and, where it was measured, ``random_mean``: random play's mean)."""
    random_mean = expert.get("random_mean")
    return {"game": game, "expert_mean": expert["mean"], "expert_max": expert["max"],
            "amn_mean": mine["mean"], "amn_max": mine["max"],
            "percent": percent_of_expert(mine["mean"], expert["mean"]),
            "random_mean": random_mean,
            "random_relative": random_relative(mine["mean"], expert["mean"], random_mean),
            "agreement": mine.get("agreement", float("nan"))}


def rows_of(record: dict, reference: dict, games) -> list:
    """Table 1 rows of one multi-game test-play record beside the experts' ``reference``."""
    return [table_row(game, record["games"][game], reference[game]) for game in games]


def scores_line(record: dict, games, reference: dict | None = None) -> str:
    """``Game mean (r% random-relative, p% of expert), ...`` of one multi-game test-play
    record (the random-relative figure where random play's mean is known)."""
    parts = []
    for game in games:
        mean = record["games"][game]["mean"]
        if reference:
            expert = reference[game]
            relative = random_relative(mean, expert["mean"], expert.get("random_mean"))
            shown = "" if relative != relative else f"{percent_text(relative)} random-relative, "
            parts.append(f"{game} {mean:.1f} ({shown}{percent_text(percent_of_expert(mean, expert['mean']))} "
                         "of expert)")
        else:
            parts.append(f"{game} {mean:.1f}")
    return ", ".join(parts)
