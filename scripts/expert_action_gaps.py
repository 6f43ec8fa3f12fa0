"""How peaked the AMN's targets softmax(Q/tau) are for each shipped expert.

Usage: python scripts/expert_action_gaps.py RUN_DIR/held_out.npz [tau ...]
Reads the held-out expert states an AMN run saved (one array per game), runs each game's
shipped expert on them and prints the median gap between the two best Q-values, the
median Q spread, and the median probability of the best action under each temperature.
"""

import sys

import numpy as np

from amn_tf import export


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    taus = [float(t) for t in argv[2:]] or [1.0, 0.1, 0.01]
    states = np.load(argv[1])
    for game in states.files:
        q = export.LoadedPolicy(f"saved_models/experts/{game}/1").outputs(states[game], game)["q_values"].numpy()
        ordered = np.sort(q, axis=1)
        line = (f"{game:13s} actions {q.shape[1]:2d} | gap median {np.median(ordered[:, -1] - ordered[:, -2]):.4f}"
                f" | spread median {np.median(ordered[:, -1] - ordered[:, 0]):.4f}")
        for tau in taus:
            z = np.exp((q - q.max(1, keepdims=True)) / tau)
            line += f" | tau {tau:g}: p(top) {np.median(z.max(1) / z.sum(1)):.2f}"
        print(line)


if __name__ == "__main__":
    main(sys.argv)
