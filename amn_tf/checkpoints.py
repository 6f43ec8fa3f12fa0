"""Resumable training state, written so that a checkpoint is complete or ignored.

A checkpoint is a directory ``ckpt-<step>`` holding the TensorFlow checkpoint of the
trackables (networks, optimizer, counters), ``state.json`` (host-side state: step,
evaluation history, random generators) and optionally ``replay-<i>.npz``. It is built
under a temporary name, fsynced, given a ``COMPLETE`` sentinel last, then renamed into
place: a crash at any moment leaves either the previous checkpoints or the new one,
never a half-written directory that would be picked up.
"""

from __future__ import annotations

import json
import os
import shutil

from absl import logging

from amn_tf import faults

SENTINEL = "COMPLETE"
PREFIX = "ckpt-"


class CheckpointError(RuntimeError):
    pass


class NoUsableCheckpoint(CheckpointError):
    """Every complete checkpoint of a directory failed to load (``advice`` ends the line)."""

    def __init__(self, directory: str, newest_error: str,
                 advice: str = "move the directory away to start over"):
        super().__init__(f"no usable checkpoint in {directory}: every one failed to load (the "
                         f"newest, {newest_error}); {advice}")
        self.directory, self.newest_error = directory, newest_error


def complete_checkpoints(directory: str) -> list[str]:
    """Complete ``ckpt-<step>`` directories under ``directory``, newest first."""
    return [path for _, path in _complete(directory)]


def complete_steps(directory: str) -> list[int]:
    """The agent steps of the complete checkpoints under ``directory``, newest first."""
    return [step for step, _ in _complete(directory)]


def newest_complete_step(directory: str) -> int:
    """The agent step of the newest complete checkpoint under ``directory`` (0 without one)."""
    steps = complete_steps(directory)
    return steps[0] if steps else 0


def _complete(directory: str) -> list:
    """(step, path) of the complete checkpoints under ``directory``, newest first."""
    found = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        path = os.path.join(directory, name)
        if name.startswith(PREFIX) and os.path.exists(os.path.join(path, SENTINEL)):
            try:
                found.append((int(name[len(PREFIX) :]), path))
            except ValueError:
                continue
    return sorted(found, reverse=True)


def _fsync_tree(directory: str) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json_atomically(path: str, payload) -> None:
    """``payload`` as JSON at ``path``, all or nothing: a failed write (full disk, ...) leaves
    the previous file, if any, whole and no temporary file behind."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def space_warning(free: int, replay_bytes: int, existing: int, keep: int) -> str | None:
    """What to tell a run whose checkpoints carry ``replay_bytes`` of replay each when ``free``
    bytes are free and ``existing`` complete checkpoints are on disk (None: room enough). Saving a
    checkpoint writes it whole before the oldest beyond ``keep`` goes, so the disk holds up to
    ``keep + 1`` at once: the checkpoints not yet on disk need ``keep + 1 - existing`` more."""
    need = replay_bytes * (keep + 1 - min(existing, keep))
    if free >= need:
        return None
    return (f"{free / 1e9:.1f} GB free under the run, but each checkpoint keeps the replay "
            f"(--save_replay, {replay_bytes / 1e9:.1f} GB) and saving one holds up to {keep + 1} at "
            f"once: {need / 1e9:.1f} GB are needed, or the run stops with 'disk full' at a "
            "checkpoint (nothing is lost: free space and rerun to resume; without --save_replay "
            "checkpoints are small and a resume refills the replay)")


class CheckpointManager:
    """Saves and restores ``ckpt-<step>`` directories under ``directory``."""

    def __init__(self, directory: str, keep: int = 2):
        self.directory = directory
        self.keep = keep
        os.makedirs(directory, exist_ok=True)
        self._remove_partials()

    def _remove_partials(self) -> None:
        for name in os.listdir(self.directory):
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def complete(self) -> list[str]:
        """Complete checkpoints, newest first."""
        return complete_checkpoints(self.directory)

    def save(self, step: int, trackables: dict, state: dict, replays=()) -> str:
        import tensorflow as tf

        final = os.path.join(self.directory, f"{PREFIX}{step:012d}")
        tmp = os.path.join(self.directory, f".tmp-{PREFIX}{step:012d}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            tf.train.Checkpoint(**trackables).write(os.path.join(tmp, "weights"))
            faults.fault_point("checkpoint_write")
            faults.io_fault_point("checkpoint_write", tmp)
            write_json_atomically(os.path.join(tmp, "state.json"), state)
            for index, memory in enumerate(replays):
                memory.save(os.path.join(tmp, f"replay-{index}.npz"))
            with open(os.path.join(tmp, SENTINEL), "w") as handle:
                handle.write(f"{step}\n")
            _fsync_tree(tmp)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in self.complete()[self.keep :]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def restore(self, trackables: dict, replays=(), validate=None, replay_wanted=None):
        """Restores the newest checkpoint that loads; returns its state dict or None.

        A checkpoint that fails to load (truncated, garbage) is reported and skipped in
        favour of the previous one; it is not deleted. ``validate(state)`` may refuse a
        readable state with a ``CheckpointError``, which stops the restore (a checkpoint of
        a newer format is not a damaged one to skip). ``replay_wanted(state)`` False skips
        reading the saved replay (a finished run that will not train again: a 1M-transition
        replay is gigabytes); the state then says ``replay_restored`` False.
        """
        import tensorflow as tf

        newest_error = None
        for path in self.complete():
            try:
                with open(os.path.join(path, "state.json")) as handle:
                    state = json.load(handle)
                if not isinstance(state, dict):
                    raise ValueError("state.json does not hold an object")
            except (OSError, ValueError) as error:
                logging.warning("checkpoint %s is unusable (%s); trying an older one", path, error)
                newest_error = newest_error or f"{os.path.basename(path)}: {error}"
                continue
            if validate is not None:
                validate(state)
            try:
                status = tf.train.Checkpoint(**trackables).read(os.path.join(path, "weights"))
                status.assert_existing_objects_matched()
                if state.get("replay_saved") and replays and (replay_wanted is None or replay_wanted(state)):
                    for index, memory in enumerate(replays):
                        memory.restore(os.path.join(path, f"replay-{index}.npz"))
                    state["replay_restored"] = True
                else:
                    state["replay_restored"] = False
                state["path"] = path
                return state
            except Exception as error:  # noqa: BLE001 - any failure means "not usable"
                logging.warning("checkpoint %s is unusable (%s); trying an older one", path, error)
                if newest_error is None:  # named in the error below
                    reason = (str(error).splitlines() or [type(error).__name__])[0]
                    newest_error = f"{os.path.basename(path)}: {reason}"
        if self.complete():
            raise NoUsableCheckpoint(self.directory, newest_error)
        return None
