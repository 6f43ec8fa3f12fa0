"""Fault injection for the kill-anywhere tests (no effect unless the variable is set)."""

from __future__ import annotations

import os

FAULT_ENV = "AMN_TF_CRASH_AT"
_fault_counts: dict = {}


def fault_point(name: str) -> None:
    """Test hook: with ``AMN_TF_CRASH_AT=<name>[:<n>[:<marker file>]]`` in the environment
    the process dies (as by SIGKILL, no cleanup) the n-th time (default first) it reaches
    ``name``; with a marker file, only if the file does not exist yet (it is created first:
    one crash across processes, e.g. Ray retries). Sites: checkpoint_write, export_write,
    evaluation."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    site, count, marker = (spec.split(":", 2) + ["", ""])[:3]
    if site != name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] != int(count or 1):
        return
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
    os._exit(137)


RAISE_ENV = "AMN_TF_OSERROR_AT"


def io_fault_point(name: str, path: str = "") -> None:
    """Test hook: with ``AMN_TF_OSERROR_AT=<name>:<errno name>`` (e.g.
    ``checkpoint_write:ENOSPC``, ``export_write:EROFS``) the write at ``name`` fails as a
    full disk or read-only file system would."""
    import errno

    spec = os.environ.get(RAISE_ENV)
    if not spec:
        return
    site, _, code = spec.partition(":")
    if site == name:
        number = getattr(errno, code or "ENOSPC")
        raise OSError(number, os.strerror(number), path)
