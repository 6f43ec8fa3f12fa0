"""A shipped model's published score beside the same SavedModel scored on fresh episodes.

Usage: python scripts/fresh_episodes.py NAME=PUBLISHED_JSON=FRESH_JSON [...]
Each JSON is an ``--mode=eval --output_json`` file; PUBLISHED is the one its card quotes, FRESH
one played afterwards on ``--mode=eval``'s own stream of another ``--seed`` (episodes that chose
nothing). Prints a Markdown table per game: both means with their standard errors and the
difference in standard errors of the difference (|d| under 2: the same within noise).
No TensorFlow: reads the JSONs only.
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from amn_tf import tables  # noqa: E402
from amn_tf.report import records  # noqa: E402


def table(entries) -> str:
    lines = ["| model | game | published mean +- SE (episodes) | fresh mean +- SE (episodes) | "
             "fresh - published, in SE of the difference |",
             "| --- | --- | ---: | ---: | ---: |"]
    for name, published, fresh in entries:
        before, after = records.load_eval(published)[0].results, records.load_eval(fresh)[0].results
        for game in after:
            if game not in before:
                continue
            (m0, s0, n0), (m1, s1, n1) = tables.mean_and_standard_error(before[game]), tables.mean_and_standard_error(after[game])
            z = (m1 - m0) / math.sqrt(s0 ** 2 + s1 ** 2) if s0 or s1 else float("nan")
            lines.append(f"| {name} | {game} | {m0:.1f} +- {s0:.1f} ({n0}) | {m1:.1f} +- {s1:.1f} ({n1}) "
                         f"| {z:+.1f} |")
    return "\n".join(lines)


def main(argv) -> None:
    if len(argv) < 2 or any(arg.count("=") != 2 for arg in argv[1:]):
        sys.exit(__doc__)
    print(table([arg.split("=") for arg in argv[1:]]))


if __name__ == "__main__":
    main(sys.argv)
