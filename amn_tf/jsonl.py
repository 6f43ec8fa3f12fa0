"""Append-only JSONL files (a run's test plays, its flag history): each line written whole and
synced, a torn last line after a crash ignored on reading."""

from __future__ import annotations

import json
import os


def append(path: str, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read(path: str) -> list:
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line after a crash
    return records


def rewrite(path: str, records: list) -> None:
    """Rewrites a history file with exactly ``records`` (used after a resume to drop
    entries written after the restored checkpoint)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
