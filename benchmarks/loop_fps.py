"""The steady frames/s of a real training command, timed here from its progress lines (shared
by the benchmark scripts; no flags of its own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FRAMES = re.compile(r"frames ([\d,]+)/[\d,]+")


def command_marks(args: list, root: str = ROOT, read_run=None) -> tuple:
    """Runs ``python -m amn_tf.main ARGS`` from the checkout ``root`` (this one by default: its
    ``amn_tf`` is the one imported) with a temporary run and export directory, and notes when
    each progress line arrives once learning runs: ``[(seconds, frames)]``, and
    ``read_run(run_dir)`` (what it reads of the run directory before it is removed) or None."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        command = [sys.executable, "-m", "amn_tf.main", f"--run_dir={run_dir}",
                   f"--export_dir={tmp}/export", *args]
        marks = []  # (seconds, frames) of each progress line once learning runs
        with open(os.path.join(tmp, "stderr"), "w+") as errors:
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True,
                                  cwd=root) as process:
                for line in process.stdout:
                    found = _FRAMES.search(line)
                    if found and "frames/s" in line and "filling replay" not in line:
                        marks.append((time.monotonic(), int(found.group(1).replace(",", ""))))
            if process.returncode != 0:
                errors.seek(0)
                raise RuntimeError(f"{' '.join(command)} failed:\n{errors.read()[-3000:]}")
        return marks, (read_run(run_dir) if read_run else None)


def command_fps(args: list, skip: int, root: str = ROOT) -> float:
    """The frames/s of ``command_marks(args, root)`` between the ``skip``-th progress line after
    learning started and the last one.

    Not the command's own frames/s: that is a rate over a two-minute window, which in a
    benchmark-length run still reaches back into the replay fill at random actions (several
    times faster than learning) and so reads high."""
    marks, _ = command_marks(args, root)
    if len(marks) < skip + 2:
        raise RuntimeError(f"only {len(marks)} progress lines after learning started; "
                           f"need more than skip + 1 = {skip + 1}: give the command more steps")
    (start, first), (end, last) = marks[skip], marks[-1]
    return (last - first) / (end - start)


def steady_rate(marks: list) -> float:
    """Frames/s over the second half of ``marks`` (``command_marks``'): the first half still
    holds the start of learning."""
    if len(marks) < 4:
        raise ValueError(f"only {len(marks)} progress lines once learning ran: give the command more "
                         "minutes or fewer --log_period steps")
    (start, first), (end, last) = marks[len(marks) // 2], marks[-1]
    return (last - first) / (end - start)
