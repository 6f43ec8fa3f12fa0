"""The DQN and AMN training loops of this checkout against another checkout of amn_tf (an older
commit in a git worktree), on the same commands, interleaved run by run so that a change in the
machine's load falls on both: did a refactor make the loops slower?

Each figure is the steady frames/s of the real command (``loop_fps.command_fps``: progress lines
after learning started, not the command's own windowed rate), min / median / max over the repeats.
DQN: Pong, 4 envs, batch 32 every 4 agent steps, replay 50k. AMN: Pong and Breakout from the
shipped experts, 4 envs per game, 8 states per game every 4 agent steps; frames are per game.
AMN-expert: the same on every shipped expert (eight games), with the experts playing
(``--amn_actor=expert``).

Usage: git worktree add /tmp/before <commit> --detach
       python benchmarks/loop_compare.py --other=/tmp/before [--repeats=3] [--seconds=60] [--loops=dqn,amn,amn-expert]
Run it on otherwise idle cores (pause any training with SIGSTOP first).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop_fps import ROOT, command_fps  # noqa: E402

flags.DEFINE_string("other", None, "The other checkout (a directory with amn_tf/ in it).", required=True)
flags.DEFINE_integer("repeats", 3, "Runs of each command in each checkout.")
flags.DEFINE_float("seconds", 60.0, "Rough seconds of learning per run (sets the budget).")
flags.DEFINE_list("loops", ["dqn", "amn"], "Which loops to run: dqn, amn, amn-expert.")
FLAGS = flags.FLAGS

QUIET = ["--eval_episodes=1", "--eval_max_steps=10", "--eval_envs=1", "--checkpoint_period=100000000"]


def commands(seconds: float) -> dict:
    """The two loops' commands, sized for about ``seconds`` of learning on this host (the DQN
    loop runs ~250 agent steps/s here, the two-game AMN ~150 per game, the eight-game one ~70)."""
    dqn_steps = int(seconds * 250) + 2_000
    amn_steps = int(seconds * 150) + 2_000
    amn8_steps = int(seconds * 70) + 1_000  # the main job's eight games: ~70 agent steps/s per game
    return {
        "DQN loop (Pong)": ["--mode=dqn", "--game=Pong", "--num_envs=4", f"--training_steps={dqn_steps}",
                            "--learning_starts=2000", "--replay_capacity=50000", "--batch_size=32",
                            "--update_period=4", f"--log_period={max(400, dqn_steps // 12)}",
                            "--eval_period=100000000", *QUIET],
        "AMN loop (Pong, Breakout)": ["--mode=amn", "--games=Pong,Breakout", "--experts=saved_models/experts",
                                      "--num_envs=4", f"--amn_steps={amn_steps}", "--amn_learning_starts=2000",
                                      "--amn_replay_capacity=20000", "--batch_per_game=8", "--update_period=4",
                                      f"--log_period={max(400, amn_steps // 12)}",
                                      "--amn_eval_period=100000000", *QUIET],
        "AMN-expert loop (8 games, the experts play)": [
            "--mode=amn", "--experts=saved_models/experts", "--amn_actor=expert", "--num_envs=4",
            f"--amn_steps={amn8_steps}", "--amn_learning_starts=1000", "--amn_replay_capacity=20000",
            "--batch_per_game=8", "--update_period=4", f"--log_period={max(200, amn8_steps // 12)}",
            "--amn_eval_period=100000000", *QUIET],
    }


def commit_of(root: str) -> str:
    try:
        return subprocess.run(["git", "-C", root, "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True, check=True).stdout.strip()[:90]
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"


def figures(values: list) -> str:
    return f"{min(values):,.0f} / {statistics.median(values):,.0f} / {max(values):,.0f}"


def main(argv):
    del argv
    other = os.path.abspath(FLAGS.other)
    if not os.path.isdir(os.path.join(other, "amn_tf")):
        raise app.UsageError(f"--other={FLAGS.other} has no amn_tf/: give a checkout of amn_tf")
    roots = {"this": ROOT, "other": other}
    print(f"# loop_compare: this = {commit_of(ROOT)}\n#               other = {commit_of(other)}\n"
          f"# {FLAGS.repeats} runs of each command in each checkout, interleaved; ~{FLAGS.seconds:g} s each")
    chosen = {name: args for name, args in commands(FLAGS.seconds).items()
              if name.split()[0].lower() in FLAGS.loops}
    if not chosen:
        raise app.UsageError(f"--loops={','.join(FLAGS.loops)}: give dqn, amn and/or amn-expert")
    results = {name: {key: [] for key in roots} for name in chosen}
    for repeat in range(FLAGS.repeats):
        for name, args in chosen.items():
            order = list(roots) if repeat % 2 == 0 else list(roots)[::-1]
            for key in order:
                fps = command_fps(args, skip=2, root=roots[key])
                results[name][key].append(fps)
                print(f"  {name}, {key}, run {repeat + 1}: {fps:,.0f} frames/s", flush=True)
    print("\n| loop | this checkout, frames/s (min / median / max) | other checkout | this / other (medians) |")
    print("| --- | ---: | ---: | ---: |")
    for name, by_root in results.items():
        ratio = statistics.median(by_root["this"]) / statistics.median(by_root["other"])
        print(f"| {name} | {figures(by_root['this'])} | {figures(by_root['other'])} | {ratio:.3f} |")


if __name__ == "__main__":
    app.run(main)
