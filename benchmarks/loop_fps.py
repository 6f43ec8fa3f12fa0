"""The frames/s of a real training command, read from its progress lines (shared by the
benchmark scripts; no flags of its own)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command_fps(args: list, skip: int) -> float:
    """Runs ``python -m amn_tf.main ARGS`` with a temporary run and export directory and
    returns the median frames/s of its progress lines after the first ``skip`` (those
    include the replay fill at random)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "amn_tf.main", f"--run_dir={tmp}/run",
                   f"--export_dir={tmp}/export", *args]
        output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rates = [float(m.replace(",", "")) for m in re.findall(r"\| ([\d,]+) frames/s", output)]
    return statistics.median(rates[skip:])
