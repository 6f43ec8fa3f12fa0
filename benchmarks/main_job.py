"""The README's main job measured the way a user meets it: a fresh clone of this repository's
committed HEAD, ``python -m amn_tf.main --mode=amn`` with no other flag, timed as a whole
command, then its AMN SavedModel scored on fresh episodes (``--mode=eval``, 30 per game by
default: eval's own episode stream, which no test play of the run shares) against the shipped
experts' 30-episode evals (``docs/results/experts/<game>-expert.json`` and ``-random.json``).

Prints the minutes, each game's AMN mean +- standard error, % of the expert's mean and the
random-relative score ``(AMN - random) / (expert - random)``, and how many games are at or above
80% of the expert's mean (the bar: at least 6 of 8 within 15 minutes); and how honest the
progress lines' ETA was (each line's ETA against the time the training actually still took).
With ``--record_dir`` it keeps the evidence there: ``main_job.json`` (the figures and the
command), the eval JSON, the printed log and the run's records (``scripts/keep_records.sh``).

Usage: python benchmarks/main_job.py [--record_dir=docs/results/main-job/<name>] [--episodes=30]
       [--main_flags='--amn_steps=...'] (extra flags: only to try a setting; the README's figure is
       measured with none)
Run it alone on the machine (pause any training with SIGSTOP first): the minutes are the point.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from amn_tf import jsonl, tables  # noqa: E402
from amn_tf.report import records  # noqa: E402

FLAGS = flags.FLAGS

BAR = 80.0  # % of the expert's mean
ETA = re.compile(r"\| ETA (?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?")
# A test play's own progress line (evaluation.PlayProgress: "...: 3/8 episodes | ... | ETA ..."): its
# ETA is that play's, not the run's, so it is never held against the run's clock.
PLAY_LINE = re.compile(r": \d+/\d+ episodes \|")


def eta_seconds(line: str) -> float | None:
    """The seconds of a progress line's ETA ("ETA 1h02m", "ETA 3m10s", "ETA 42s"), or None."""
    match = ETA.search(line)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return 3600 * hours + 60 * minutes + seconds


def eta_errors(timed_lines: list, end: float, final_play_seconds: float | None = None) -> list:
    """[(elapsed, predicted seconds left, actual seconds left)] of every progress line of the run
    whose ETA can be held against the clock (a test play's own lines are not the run's);
    ``timed_lines`` are (seconds since start, line), ``end`` when the final test play was printed.
    An ETA that counts everything to come is held against ``end``; one that leaves the untimed
    final test play out ("ETA 3m10s + 1 test play") against the training still to come, up to
    ``end`` less that test play's ``final_play_seconds`` (its record's ``test_play_seconds``;
    None: such lines are left out, as are lines with more test plays ahead)."""
    out = []
    for at, line in timed_lines:
        if PLAY_LINE.search(line):
            continue
        predicted = eta_seconds(line)
        plays = re.search(r"\| ETA [^|]* \+ (\d+) test play", line)
        if predicted is None:
            continue
        if not plays:
            out.append((at, predicted, end - at))
        elif plays.group(1) == "1" and final_play_seconds is not None:
            out.append((at, predicted, end - final_play_seconds - at))
    return out


def final_play_seconds(run_dir: str | None) -> float | None:
    """The final test play's ``test_play_seconds`` from the run's ``eval.jsonl`` (None if absent)."""
    history = jsonl.read(os.path.join(run_dir, "eval.jsonl")) if run_dir else []
    return history[-1].get("test_play_seconds") if history else None


def run_streamed(command: list, cwd: str, log) -> tuple:
    """Runs ``command``, echoing and logging each line with its time; returns (return code,
    seconds, [(seconds since start, line)])."""
    start = time.monotonic()
    timed = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as process:
        for line in process.stdout:
            at = time.monotonic() - start
            timed.append((at, line.rstrip("\n")))
            sys.stdout.write(line)
            log.write(f"{at:8.1f} {line}")
        code = process.wait()
    return code, time.monotonic() - start, timed


def _load(path: str) -> dict:
    return records.load_eval(path)[0].results


def score_table(amn: dict, experts_dir: str) -> tuple:
    """(Markdown table, rows): per game the AMN's fresh-episode mean +- SE, the expert's and random
    play's means, % of the expert and random-relative %; games ordered as the AMN's results."""
    rows = []
    for game, result in amn.items():
        mean, se, _ = tables.mean_and_standard_error(result)
        expert = _load(os.path.join(experts_dir, f"{game}-expert.json"))[game]["mean"]
        random_mean = _load(os.path.join(experts_dir, f"{game}-random.json"))[game]["mean"]
        rows.append({"game": game, "mean": mean, "se": se, "episodes": result["episodes"],
                     "expert": expert, "random": random_mean,
                     "percent": tables.percent_of_expert(mean, expert),
                     "random_relative": tables.random_relative(mean, expert, random_mean)})
    lines = ["| game | AMN mean +- SE (episodes) | expert | random | % of expert | random-relative |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['game']} | {r['mean']:.1f} +- {r['se']:.1f} ({r['episodes']}) | {r['expert']:.1f} | "
              f"{r['random']:.1f} | {tables.percent_text(r['percent'])} | {tables.percent_text(r['random_relative'])} |"
              for r in rows]
    return "\n".join(lines), rows


def main(_):
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="main-job-")
    clone = os.path.join(workdir, "amn_tf")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", ROOT, clone], check=True)
    record = FLAGS.record_dir and os.path.abspath(FLAGS.record_dir)
    if record:
        os.makedirs(record, exist_ok=True)
    log_path = os.path.join(record or workdir, "main_job.log")
    command = [sys.executable, "-m", "amn_tf.main", "--mode=amn", *shlex.split(FLAGS.main_flags)]
    print(f"fresh clone of {head[:10]} in {clone}\n$ {' '.join(command[1:])}", flush=True)
    with open(log_path, "w") as log:
        code, seconds, timed = run_streamed(command, clone, log)
    if code != 0:
        sys.exit(f"the main job failed (exit {code}): see {log_path}")
    saved = [line.split("SavedModel:", 1)[1].strip() for _, line in timed if "] SavedModel:" in line]
    if not saved:
        sys.exit(f"the main job printed no 'SavedModel:' line: see {log_path}")
    saved_model = os.path.join(clone, saved[-1])
    final_play_at = next((at for at, line in timed if "] final test play at frame" in line), seconds)
    eval_json = os.path.join(record or workdir, "main-job-eval.json")
    subprocess.run([sys.executable, "-m", "amn_tf.main", "--mode=eval", f"--saved_model={saved_model}",
                    f"--eval_episodes={FLAGS.episodes}", f"--output_json={eval_json}"],
                   cwd=clone, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    text, rows = score_table(_load(eval_json), FLAGS.experts_dir)
    passed = [r["game"] for r in rows if r["percent"] >= BAR]
    logdir = next((line.split()[-1] for _, line in timed if "] TensorBoard:" in line), None)
    run = logdir and os.path.dirname(os.path.join(clone, logdir).rstrip("/"))  # <run dir>/tensorboard
    errors = eta_errors(timed, final_play_at, final_play_seconds(run))
    late = [(at, p, a) for at, p, a in errors if at >= 0.1 * final_play_at]
    worst = max(late, key=lambda e: abs(e[1] - e[2]), default=None)
    summary = (f"main job: {seconds / 60:.1f} minutes from a fresh clone (its final test play done at "
               f"{final_play_at / 60:.1f}); {len(passed)} of {len(rows)} games at >= {BAR:.0f}% of the "
               f"expert's mean over {FLAGS.episodes} fresh episodes ({', '.join(passed) or 'none'})")
    eta_text = ("ETA after the first 10% of the run: worst "
                f"{worst[1] / 60:.1f} min predicted at {worst[0] / 60:.1f} min where {worst[2] / 60:.1f} "
                "were left" if worst else "no ETA printed")
    print(f"\n{text}\n\n{summary}\n{eta_text}")
    if record:
        payload = {"commit": head, "command": f"python -m amn_tf.main --mode=amn {FLAGS.main_flags}".strip(),
                   "minutes": seconds / 60, "eval_episodes": FLAGS.episodes, "games": rows,
                   "games_at_bar": passed, "bar_percent": BAR,
                   "eta": [{"at": at, "predicted": p, "actual": a} for at, p, a in errors],
                   "cpu": _cpu_model(), "cores": os.cpu_count()}
        with open(os.path.join(record, "main_job.json"), "w") as handle:
            json.dump(payload, handle, indent=1)
        with open(os.path.join(record, "main_job.md"), "w") as handle:
            handle.write(f"{text}\n\n{summary}.\n{eta_text}.\n")
        if run:  # keep the run's records
            subprocess.run(["bash", "scripts/keep_records.sh", run,
                            os.path.join(record, "runs", os.path.basename(run))], cwd=ROOT, check=True)
    if not FLAGS.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        return ""


def _define_flags() -> None:
    """The script's flags, defined only when it runs as a script (imported by a test beside
    amn_tf.cli, they would join its flags)."""
    flags.DEFINE_string("record_dir", None, "Where to keep the figures, the eval JSON, the log and "
                        "the run's records (none: print only).")
    flags.DEFINE_integer("episodes", 30, "Fresh episodes per game for the SavedModel's score.")
    flags.DEFINE_string("main_flags", "", "Extra flags for the main job, as one shell-quoted string "
                        "(none for the README's figure).")
    flags.DEFINE_string("experts_dir", os.path.join(ROOT, "docs", "results", "experts"),
                        "Where <game>-expert.json and <game>-random.json are (30-episode evals).")
    flags.DEFINE_string("workdir", None, "Where to clone (default: a temporary directory, removed after).")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
