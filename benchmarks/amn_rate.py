"""What M minutes of training buy one AMN setting alone on this machine, for a
distillation-per-minute sweep trained by step budgets (``scripts/amn_sweep.sh rates``, then
``train``).

A sweep that gives every setting the same ``--train_minutes`` is fair only alone on the machine:
a training or a test suite beside it takes minutes from one setting and not another. Here each
setting is measured alone once, briefly: ``python -m amn_tf.main --mode=amn --train_minutes=P``
with the setting's flags (progress lines every ``--log_steps`` agent steps, no test play before
the end, a one-episode test play then), from which it keeps

  * the frames per game the probe reached in its training minutes (its last test-play record:
    ``frames``, and its wall clock less its test play, as the per-minute report reads a run), and
  * the steady frames/s per game over the second half of its progress lines (learning running),

and writes them under ``--name`` into ``--rates_json``. The sweep then trains the setting for
``frames_in(rate, MINUTES) / 4`` agent steps (``--amn_steps``), which learns the same whatever
runs beside it (the flags fix the learner updates per agent step), and the per-minute report
reads each run's minutes back through the same rate (``--report_rates``).

Usage: python benchmarks/amn_rate.py --name=reference --rates_json=RATES [--probe_minutes=3] -- [setting flags]
       python benchmarks/amn_rate.py --name=reference --rates_json=RATES --steps_for=10
         (prints the agent steps per game for 10 training minutes at the measured rate)
       python benchmarks/amn_rate.py --name=reference --rates_json=RATES --measured  (exit 0: measured)
       python benchmarks/amn_rate.py --name=lr5e-4 --rates_json=RATES --same_as=reference -- FLAGS
         (a setting that changes nothing the speed depends on takes another's rate)
Run the probes alone on the machine (pause any training with SIGSTOP first): the rate is the point.
A setting whose speed changes part-way (``--amn_expert_steps``: the experts play inline first)
needs a probe longer than that phase (the sweep gives it one).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loop_fps  # noqa: E402

from amn_tf import config as config_lib  # noqa: E402
from amn_tf import jsonl  # noqa: E402
from amn_tf.report import per_minute  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("name", None, "The setting's name (its key in --rates_json).", required=True)
flags.DEFINE_string("rates_json", None, "The rates JSON to add the setting to (or read, with --steps_for).",
                    required=True)
flags.DEFINE_float("probe_minutes", 3.0, "Training minutes of the probe.", lower_bound=0.1)
flags.DEFINE_integer("log_steps", 1000, "Agent steps per game between the probe's progress lines.", lower_bound=1)
flags.DEFINE_boolean("measured", False, "Exit 0 when --rates_json has the setting's rate, 1 when not; "
                     "measure nothing.")
flags.DEFINE_string("same_as", None, "Record --name with the rate measured for this setting (one that "
                    "differs only in what does not change the speed, e.g. the learning rate); measure nothing.")
flags.DEFINE_float("steps_for", None, "Print the agent steps per game that this many training minutes "
                   "buy the setting at its measured rate, and measure nothing.", lower_bound=0.1)

FRAMES_PER_STEP = 4


def probe(setting_flags: list, minutes: float, log_steps: int) -> dict:
    """Runs the setting for ``minutes`` of training in a temporary run directory; its rate entry."""
    args = ["--mode=amn", f"--train_minutes={minutes}", "--amn_steps=100000000", "--amn_eval_period=100000000",
            "--checkpoint_period=100000000", f"--log_period={log_steps}", "--eval_episodes=1", *setting_flags]
    marks, history = loop_fps.command_marks(args, read_run=lambda run_dir: jsonl.read(os.path.join(run_dir, "eval.jsonl")))
    trained = per_minute.training_minutes(history)
    if trained is None:
        raise RuntimeError("the probe's records lack wall_seconds or test_play_seconds")
    return {"probe_minutes": round(trained, 4), "probe_frames": history[-1]["frames"],
            "frames_per_second": round(loop_fps.steady_rate(marks), 2), "progress_lines": len(marks),
            "flags": shlex.join(setting_flags),
            "command": shlex.join(["python", "benchmarks/amn_rate.py", f"--name={FLAGS.name}",
                                   f"--probe_minutes={minutes}", f"--log_steps={log_steps}", "--", *setting_flags]),
            "host": _cpu(), "date": datetime.date.today().isoformat()}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cpus"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus"


def _read(path: str) -> dict:
    if not os.path.exists(path):
        return {"settings": {}}
    with open(path) as handle:
        return json.load(handle)


def main(argv):
    if FLAGS.measured:
        try:
            sys.exit(0 if FLAGS.name in per_minute.load_rates(FLAGS.rates_json, "--rates_json") else 1)
        except config_lib.ConfigError:
            sys.exit(1)
    if FLAGS.steps_for is not None:
        try:
            rates = per_minute.load_rates(FLAGS.rates_json, "--rates_json")
        except config_lib.ConfigError as error:
            sys.exit(f"{error}: measure the setting first (scripts/amn_sweep.sh rates)")
        if FLAGS.name not in rates:
            sys.exit(f"{FLAGS.rates_json} has no rate for {FLAGS.name}: measure it first "
                     f"(python benchmarks/amn_rate.py --name={FLAGS.name} --rates_json={FLAGS.rates_json} -- FLAGS)")
        frames = per_minute.frames_in(rates[FLAGS.name], FLAGS.steps_for)
        print(max(1, round(frames / FRAMES_PER_STEP)))
        return
    rates = _read(FLAGS.rates_json)
    if FLAGS.same_as:
        if FLAGS.same_as not in rates["settings"]:
            sys.exit(f"{FLAGS.rates_json} has no rate for {FLAGS.same_as} yet: measure it before {FLAGS.name}")
        command = ["python", "benchmarks/amn_rate.py", f"--name={FLAGS.name}", f"--same_as={FLAGS.same_as}", "--", *argv[1:]]
        entry = {**rates["settings"][FLAGS.same_as], "same_as": FLAGS.same_as, "flags": shlex.join(argv[1:]),
                 "command": shlex.join(command)}
    else:
        try:
            entry = probe(argv[1:], FLAGS.probe_minutes, FLAGS.log_steps)
        except (RuntimeError, ValueError) as error:
            sys.exit(f"{FLAGS.name}: the probe failed, no rate written: {error}")
    rates["settings"][FLAGS.name] = entry
    rates["about"] = ("per setting: probe_frames per game reached in probe_minutes of training and the steady "
                      "frames_per_second per game after, measured alone by benchmarks/amn_rate.py; M minutes "
                      "buy probe_frames + (M - probe_minutes) x 60 x frames_per_second frames per game")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.rates_json)), exist_ok=True)
    partial = FLAGS.rates_json + ".partial"
    with open(partial, "w") as handle:
        json.dump(rates, handle, indent=2)
        handle.write("\n")
    os.replace(partial, FLAGS.rates_json)
    if FLAGS.same_as:
        print(f"{FLAGS.name}: the rate of {FLAGS.same_as} ({entry['frames_per_second']:.1f} frames/s per game)")
        return
    print(f"{FLAGS.name}: {entry['probe_frames']:,} frames per game in {entry['probe_minutes']:.2f} training "
          f"minutes, then {entry['frames_per_second']:.1f} frames/s per game ({entry['progress_lines']} "
          f"progress lines); 10 minutes buy {per_minute.frames_in(entry, 10):,.0f} frames per game "
          f"({entry['host']})")


if __name__ == "__main__":
    app.run(main)
