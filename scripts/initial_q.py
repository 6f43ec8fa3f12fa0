"""The output scale each transfer init starts from: the initial network's values on a target
game's states, beside a trained DQN's on the same states.

Usage: python scripts/initial_q.py GAME INIT [INIT ...] [--trained=SAVED_MODEL ...]
INIT as for --mode=transfer (``random`` or ``amn:PATH``). On 1,024 states from uniformly random
play (4 emulators, seed 0, paper protocol) prints per network the mean, std, min and max of its
outputs for the game's legal actions and the mean spread between the best and worst action. A
DQN trained with clipped rewards ends with values near each other; an AMN's output layer was
trained as policy logits (softmax(Q / tau) targets), so its spread says how far the first
updates must move the output layer before its greedy actions follow the learned values.
"""

import sys

import keras
import numpy as np

from amn_tf import envs, export, transfer


def line(name: str, q: np.ndarray) -> str:
    return (f"{name:45s} mean {q.mean():7.3f} std {q.std():6.3f} min {q.min():7.3f} max {q.max():7.3f}"
            f" | best - worst action, mean {np.mean(q.max(1) - q.min(1)):.3f}")


def main(argv):
    inits = [a for a in argv[2:] if not a.startswith("--trained=")]
    trained = [a.split("=", 1)[1] for a in argv[2:] if a.startswith("--trained=")]
    if len(argv) < 3 or not inits:
        sys.exit(__doc__)
    game = envs.canonical_game(argv[1])
    states, _ = transfer.random_play_states(game, "paper", 1024, 0, "vector")
    legal = envs.legal_actions(game)
    for init in inits:
        keras.utils.set_random_seed(0)  # random init: the same draw every time
        model, _ = transfer.build_initial_network(init, game)
        outputs, _ = model(states, training=False)  # every network: [outputs, features]
        print(line(f"initial, {init}", np.asarray(outputs)[:, legal]))
    for path in trained:
        print(line(f"trained, {path}", export.LoadedPolicy(path).outputs(states, game)["q_values"].numpy()))


if __name__ == "__main__":
    main(sys.argv)
