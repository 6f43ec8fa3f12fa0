"""Arithmetic on test-play curves that several tables share: block means, the frames to reach a
score, the seeds' mean curve, learner updates and training hours by a test play, and the notes
on runs that learned less than an uninterrupted run. A curve is a list of (frames, mean) points.
"""

from __future__ import annotations

import numpy as np

from amn_tf import envs


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


def frames_staying_above(points, score):
    """The frames of the first test play from which every later one is at or above ``score``
    (None when the last is under it): a reach that one lucky early test play cannot fake."""
    found = None
    for frames, value in points:
        if value >= score:
            found = frames if found is None else found
        else:
            found = None
    return found


def mean_curve(runs) -> list:
    """The seeds' mean test score at each evaluation frame that every seed reached (runs of
    one recipe evaluate at the same frames), as (frames, mean) points."""
    lookups = [dict(r["points"]) for r in runs]
    shared = sorted(set.intersection(*(set(lookup) for lookup in lookups)))
    return [(f, float(np.mean([lookup[f] for lookup in lookups]))) for f in shared]


def score_at(points, frames):
    """The last test play at or before ``frames`` (None before the first)."""
    before = [score for f, score in points if f <= frames]
    return before[-1] if before else None


def millions(frames) -> str:
    return f"{frames / 1e6:.2f}M" if frames >= 100_000 else f"{frames:,}"


def clock(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def updates_at(recipe: dict, frames: int) -> int:
    """Learner updates a DQN of ``recipe`` made by ``frames``: one per ``update_period`` agent
    steps after ``learning_starts``."""
    steps = frames // 4 - int(recipe.get("learning_starts") or 0)
    return max(0, steps) // int(recipe.get("update_period") or 4)


def hours_at(run, frames) -> float | None:
    """Hours of training (the run loop's wall-clock, test plays included, summed over its
    invocations) by the test play at ``frames``; None when its records do not keep them."""
    seconds = [r.get("wall_seconds") for r in run["history"] if r["frames"] == frames]
    return seconds[0] / 3600 if seconds and seconds[0] is not None else None


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
            short.append(f"- {run['name']}: {done:,} learner updates by {millions(frames)} frames, "
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
                         f"{millions(step * envs.FRAMES_PER_STEP)} frames: {what}; the table groups "
                         "it by its last recipe")
    return ["", *notes] if notes else []
