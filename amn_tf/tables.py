"""Table 1 figures as Markdown, and the rule by which ``--mode=rank_sources`` calls a source
related: free of TensorFlow, shared by the training modes (their progress and final lines,
the ranking's warning) and ``--mode=report``."""

from __future__ import annotations

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


def table(rows, kind: str = "AMN") -> str:
    """Per-game Table 1 figures as Markdown (``kind``: whose scores, e.g. AMN or MDQN;
    agreement is "-" where the run has none)."""
    lines = [f"| game | expert mean | expert max | {kind} mean | {kind} max | {kind} % of expert "
             "| agreement |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        agreement = row["agreement"]
        agreement = "-" if agreement != agreement else f"{100 * agreement:.0f}%"  # NaN: none
        lines.append(f"| {row['game']} | {row['expert_mean']:.1f} | {row['expert_max']:.1f} | "
                     f"{row['amn_mean']:.1f} | {row['amn_max']:.1f} | {percent_text(row['percent'])} | "
                     f"{agreement} |")
    return "\n".join(lines)


def percent_text(percent: float) -> str:
    """``95%``, or ``-`` where there is no ratio (NaN: the expert scored 0)."""
    return "-" if percent != percent else f"{percent + 0.0:.0f}%"  # + 0.0: no "-0%"


def rows_of(record: dict, reference: dict, games) -> list:
    """Table 1 rows of one multi-game test-play record beside the experts' ``reference``."""
    rows = []
    for game in games:
        mine, theirs = record["games"][game], reference[game]
        rows.append({"game": game, "expert_mean": theirs["mean"], "expert_max": theirs["max"],
                     "amn_mean": mine["mean"], "amn_max": mine["max"],
                     "percent": percent_of_expert(mine["mean"], theirs["mean"]),
                     "agreement": mine.get("agreement", float("nan"))})
    return rows


def scores_line(record: dict, games, reference: dict | None = None) -> str:
    """``Game mean (p% of expert), ...`` of one multi-game test-play record."""
    parts = []
    for game in games:
        mean = record["games"][game]["mean"]
        if reference:
            parts.append(f"{game} {mean:.1f} ({percent_of_expert(mean, reference[game]['mean']):.0f}% of expert)")
        else:
            parts.append(f"{game} {mean:.1f}")
    return ", ".join(parts)
