"""A shipped model's published score beside the same SavedModel scored on fresh episodes.

Usage: python scripts/fresh_episodes.py NAME=PUBLISHED_JSON=FRESH_JSON [...]
Each JSON is an ``--mode=eval --output_json`` file; PUBLISHED is the one its card quotes, FRESH
one played afterwards on ``--mode=eval``'s own stream of another ``--seed`` (episodes that chose
nothing). Prints a Markdown table per game: both means with their standard errors and the
difference in standard errors of the difference (|d| under 2: the same within noise).
No TensorFlow: reads the JSONs only.
"""

import json
import math
import sys


def _results(path: str) -> dict:
    with open(path) as handle:
        payload = json.load(handle)
    payload = payload[0] if isinstance(payload, list) else payload
    return {r["game"]: r for r in payload["results"]}


def _mean_se(result: dict) -> tuple:
    returns = result.get("returns") or []
    n = len(returns) or result["episodes"]
    mean = sum(returns) / n if returns else result["mean"]
    variance = sum((r - mean) ** 2 for r in returns) / (n - 1) if len(returns) > 1 else result.get("std", 0.0) ** 2
    return result["mean"], math.sqrt(variance / n), n


def table(entries) -> str:
    lines = ["| model | game | published mean +- SE (episodes) | fresh mean +- SE (episodes) | "
             "fresh - published, in SE of the difference |",
             "| --- | --- | ---: | ---: | ---: |"]
    for name, published, fresh in entries:
        before, after = _results(published), _results(fresh)
        for game in after:
            if game not in before:
                continue
            (m0, s0, n0), (m1, s1, n1) = _mean_se(before[game]), _mean_se(after[game])
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
