"""How peaked the AMN's targets softmax(Q/tau) are for each shipped expert, and, given an AMN,
where it departs from the expert and what that costs by the expert's own values.

Usage: python scripts/expert_action_gaps.py RUN_DIR/held_out.npz [--amn=AMN_SAVED_MODEL] [tau ...]
Reads the held-out expert states an AMN run saved (one array per game), runs each game's
shipped expert on them and prints the median gap between the two best Q-values, the
median Q spread, and the median probability of the best action under each temperature.
With --amn, per game also: how often the AMN's greedy action is the expert's (on all
states, and on the quarter of states where the expert's top-two gap is largest, the
decisive ones), and the AMN's regret by the expert's values, Q(best) - Q(AMN's action),
as a mean and relative to the expert's median Q spread.
"""

import sys

import numpy as np

from amn_tf import export


def amn_lines(amn, game, states, q) -> str:
    legal = amn.legal_actions(game)
    chosen = np.argmax(amn.values(states, game)[:, legal], axis=1)  # index into the legal set
    ordered = np.sort(q, axis=1)
    gap = ordered[:, -1] - ordered[:, -2]
    decisive = gap >= np.quantile(gap, 0.75)
    agree = chosen == np.argmax(q, axis=1)
    regret = q.max(axis=1) - q[np.arange(len(q)), chosen]
    spread = np.median(ordered[:, -1] - ordered[:, 0])
    return (f" | AMN agrees {agree.mean():.0%} (decisive quarter {agree[decisive].mean():.0%})"
            f" | regret mean {regret.mean():.4f} = {regret.mean() / spread:.0%} of the spread"
            f" (decisive quarter {regret[decisive].mean():.4f})")


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--amn=")]
    amn_paths = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--amn=")]
    if not args:
        sys.exit(__doc__)
    taus = [float(t) for t in args[1:]] or [1.0, 0.1, 0.01]
    amn = export.LoadedPolicy(amn_paths[0]) if amn_paths else None
    states = np.load(args[0])
    for game in states.files:
        q = export.LoadedPolicy(f"saved_models/experts/{game}/1").outputs(states[game], game)["q_values"].numpy()
        ordered = np.sort(q, axis=1)
        line = (f"{game:13s} actions {q.shape[1]:2d} | gap median {np.median(ordered[:, -1] - ordered[:, -2]):.4f}"
                f" | spread median {np.median(ordered[:, -1] - ordered[:, 0]):.4f}")
        for tau in taus:
            z = np.exp((q - q.max(1, keepdims=True)) / tau)
            line += f" | tau {tau:g}: p(top) {np.median(z.max(1) / z.sum(1)):.2f}"
        if amn is not None:
            line += amn_lines(amn, game, states[game], q)
        print(line)


if __name__ == "__main__":
    main(sys.argv)
