"""Where the AMN plays: the main job's training loop with --amn_acting=inline (the learner's
thread steps the games between its updates, the reference) against --amn_acting=thread (one
background thread plays while the learner updates), side by side in one run, alternating.

Each run is the README's main job (every shipped expert, the default flags) cut to a short
budget; the figure is its frames/s per game while learning (``loop_fps.command_fps``: between
progress lines, after learning started), the same number of learner updates per agent step in
both. Usage:

  python benchmarks/bench_amn_acting.py [--steps=13000] [--skip=1] [--repeats=1] [--main_flags="..."]

Run it alone on the machine (pause any training with SIGSTOP first).
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop_fps import command_fps  # noqa: E402

flags.DEFINE_integer("steps", 13_000, "Agent steps per game per run (learning starts at the "
                     "default 5,000).", lower_bound=7_000)
flags.DEFINE_integer("repeats", 1, "Runs of each mode (alternating).", lower_bound=1)
flags.DEFINE_integer("skip", 1, "Progress lines (1,000 agent steps each) after learning started "
                     "before the timing starts.", lower_bound=0)
flags.DEFINE_string("main_flags", "", "Extra flags for every run, one shell-quoted string.")
FLAGS = flags.FLAGS
MODES = ("inline", "thread")


def main(_):
    common = ["--mode=amn", f"--amn_steps={FLAGS.steps}", f"--amn_eval_period={FLAGS.steps}",
              "--log_period=1000", "--eval_episodes=1", "--eval_max_steps=100",
              *shlex.split(FLAGS.main_flags)]
    figures = {mode: [] for mode in MODES}
    for repeat in range(FLAGS.repeats):
        for mode in MODES:
            fps = command_fps([*common, f"--amn_acting={mode}"], skip=FLAGS.skip)
            figures[mode].append(fps)
            print(f"run {repeat + 1} --amn_acting={mode}: {fps:.0f} frames/s per game", flush=True)
    reference = statistics.median(figures["inline"])
    print(f"\n{' '.join(common)}\n")
    print("| --amn_acting | frames/s per game (median) | runs | against inline |")
    print("| --- | ---: | --- | ---: |")
    for mode in MODES:
        median = statistics.median(figures[mode])
        runs = ", ".join(f"{v:.0f}" for v in figures[mode])
        print(f"| {mode} | {median:.0f} | {runs} | {median / reference:.2f}x |")


if __name__ == "__main__":
    app.run(main)
