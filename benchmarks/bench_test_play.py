"""A multi-game test play, the games one after another against the games in parallel threads
(``evaluation.in_parallel``, what AMN / multitask-DQN test plays and ``--mode=eval`` do): seconds
for every game of a SavedModel, side by side in one run, and whether each game's returns agree.

Usage: python benchmarks/bench_test_play.py [--saved_model=saved_models/amn/amn-feature/1]
       [--episodes=8] [--eval_envs=8]
Run it alone on the machine (pause any training with SIGSTOP first).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from amn_tf import evaluation, export, seeds  # noqa: E402

flags.DEFINE_string("saved_model", "saved_models/amn/amn-feature/1", "A multi-game SavedModel.")
flags.DEFINE_integer("episodes", 8, "Episodes per game (the training test play's default).")
flags.DEFINE_integer("eval_envs", 8, "Emulators per game.")
FLAGS = flags.FLAGS


def main(_):
    loaded = export.LoadedPolicy(FLAGS.saved_model)
    games = loaded.games
    policies = {game: evaluation.saved_model_policy(loaded, game) for game in games}

    def one(index, game):
        return evaluation.play(policies[game], game, loaded.protocol, FLAGS.episodes, 0.05, FLAGS.eval_envs,
                               27_000, seeds.test_play(0, 0, index))

    one(0, games[0])  # traces the signature once, outside both timings
    started = time.monotonic()
    alone = [one(i, g) for i, g in enumerate(games)]
    sequential = time.monotonic() - started
    started = time.monotonic()
    together = evaluation.in_parallel([lambda i=i, g=g: one(i, g) for i, g in enumerate(games)])
    parallel = time.monotonic() - started
    same = all(a.returns == t.returns for a, t in zip(alone, together))
    print(f"{FLAGS.saved_model}: {len(games)} games x {FLAGS.episodes} episodes on {FLAGS.eval_envs} emulators each\n"
          "| games one after another (s) | in parallel threads (s) | speed-up | same returns per game |\n"
          "| ---: | ---: | ---: | --- |\n"
          f"| {sequential:.1f} | {parallel:.1f} | {sequential / parallel:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    app.run(main)
