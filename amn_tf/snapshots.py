"""``--keep_best``: the network of each test play that beats the run's best so far, exported
beside the checkpoints while training goes on (``<run_dir>/best/step-<agent step>/``).

The snapshots follow the restored timeline: a snapshot is exported at each test play that beats
the best so far, so the newest snapshot at or before a checkpoint is that checkpoint's best. A
save keeps that one for every kept checkpoint (the newest may fail to load and the run fall back
to the older) and removes the rest; a resume removes snapshots after its step, of no recorded
test play, or half-written, and takes the best of the rest by the test plays it kept. A snapshot
that cannot be written is a warning: the checkpoints are what the run cannot lose.
"""

from __future__ import annotations

import os
import re
import shutil

from amn_tf import checkpoints, envs, export

BEST_DIR = "best"  # <run_dir>/best/step-<agent step>/: the best test play's SavedModel
_SNAPSHOT = re.compile(r"step-(\d+)")


def best_text(label: str, best: dict) -> str:
    return (f"[{label}] best test play: {best['mean']:.1f} at frame {best['frames']:,}: SavedModel "
            f"{best['export']} (score it on fresh episodes: --mode=eval --saved_model=<that path>)")


def best_snapshot(names: list, history: list, step: int) -> tuple:
    """Of the entries of ``<run_dir>/best/`` (``names``), which snapshot is the best test play of
    a run restored at ``step`` with test-play ``history`` (its records up to ``step``), and which
    entries go: snapshots made after ``step`` (a timeline the restore abandoned), snapshots of
    no recorded test play and half-written exports (``.tmp-*``); ``stale_snapshots`` says
    which of the rest no checkpoint needs. Returns ``(best, remove)``: ``best`` is
    ``(mean, step, name)`` or None; the earliest snapshot wins a tie. Other names are left
    alone."""
    means = {record["step"]: record["mean"] for record in history if "mean" in record}
    best, remove = None, []
    for name in sorted(names):
        match = _SNAPSHOT.fullmatch(name)
        if name.startswith(".tmp-"):
            remove.append(name)
        elif match:
            at = int(match.group(1))
            if at > step or at not in means:
                remove.append(name)
            elif best is None or (means[at], -at) > (best[0], -best[1]):
                best = (means[at], at, name)
    return best, remove


def stale_snapshots(names: list, checkpoint_steps: list, best_step: int) -> list:
    """The snapshots no restore can need: each snapshot is the best so far when it is made, so
    a run restored at checkpoint ``c`` needs the newest snapshot at or before ``c``; the others,
    but the current best, go."""
    steps = {int(m.group(1)): name for name in names if (m := _SNAPSHOT.fullmatch(name))}
    keep = {best_step}
    for checkpoint in checkpoint_steps:
        before = [step for step in steps if step <= checkpoint]
        if before:
            keep.add(max(before))
    return sorted(name for step, name in steps.items() if step not in keep)


class BestSnapshots:
    """The best test play's snapshot of one run (``best``: mean, step, frames, export path, or
    None), kept in step with the run's checkpoints in ``checkpoint_directory``."""

    def __init__(self, run_dir: str, agent, checkpoint_directory: str):
        self.root = os.path.join(run_dir, BEST_DIR)
        self.run_dir = run_dir
        self.agent = agent
        self.checkpoint_directory = checkpoint_directory
        self.best: dict | None = None

    def restore(self, history: list, step: int) -> None:
        """The best snapshot of the timeline restored at ``step`` with test plays ``history``;
        what a crash or an abandoned timeline left goes (see ``best_snapshot``)."""
        if not os.path.isdir(self.root):
            return
        best, remove = best_snapshot(os.listdir(self.root), history, step)
        for name in remove:
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        self.best = best and self._record(best[0], best[1], os.path.join(self.root, best[2]))
        self.prune()

    def offer(self, record: dict, step: int) -> None:
        """Exports the network as it is at this test play if it beats the best so far. Earlier
        snapshots stay while a kept checkpoint's timeline has them as its best (a crash, or a
        newest checkpoint that fails to load, resumes before this one)."""
        if self.best is not None and record["mean"] <= self.best["mean"]:
            return
        path = os.path.join(self.root, f"step-{step:012d}")
        shutil.rmtree(path, ignore_errors=True)  # an earlier try at this step (one that crashed)
        try:
            self.agent.export(path, record, step, self.run_dir)
        except export.ExportError as error:  # the run goes on; its checkpoints are what matter
            print(f"[{self.agent.label}] warning: the best test play's SavedModel was not kept: "
                  f"{error}", flush=True)
            return
        self.best = self._record(record["mean"], step, path)
        print(f"[{self.agent.label}] best test play so far ({record['mean']:.1f} at frame "
              f"{step * envs.FRAMES_PER_STEP:,}): SavedModel {path}", flush=True)

    def prune(self) -> None:
        """Removes the snapshots no kept checkpoint's timeline needs."""
        if self.best is None or not os.path.isdir(self.root):  # (a user may have moved it away)
            return
        steps = checkpoints.complete_steps(self.checkpoint_directory)
        for name in stale_snapshots(os.listdir(self.root), steps, self.best["step"]):
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    @staticmethod
    def _record(mean: float, step: int, path: str) -> dict:
        return {"mean": mean, "step": step, "frames": step * envs.FRAMES_PER_STEP, "export": path}
