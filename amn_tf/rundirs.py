"""Run directories: claiming one for a process (an OS lock), what it holds (``run.json``), and the
flags each invocation ran with (``flags.json``, ``flags_history.jsonl``), checked on a resume."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time

from amn_tf import checkpoints, jsonl

RUN_INFO = "run.json"


class RunError(RuntimeError):
    """A run directory that cannot be used for this command."""


def portable_path(path: str, keep: int = 1) -> str:
    """How records and exported metadata name a run directory or a model: relative to the
    project (the working directory) when it lies inside it, else by its last ``keep``
    components (1: a run's name; 3: a SavedModel's ``<kind>/<name>/<version>``). An absolute
    path names a directory on the machine that trained it only."""
    absolute, here = os.path.abspath(path), os.getcwd()
    if absolute == here or absolute.startswith(here + os.sep):
        return os.path.relpath(absolute, here)
    return os.path.join(*os.path.normpath(absolute).split(os.sep)[-keep:])


_PATH_IN_COMMAND = re.compile(r"(?<=[= ])/[^\s'\"]+")


def portable_record(value):
    """``value`` (flags, provenance, a record: nested dicts, lists and strings) with every
    absolute path in it named as ``portable_path`` names it: a SavedModel version directory
    (its last component a number) by ``<kind>/<name>/<version>``, anything else by its name,
    and the absolute paths inside a command line (a string with `` --`` flags: ``--flag=/path``,
    `` /path``) likewise."""
    if isinstance(value, dict):
        return {key: portable_record(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_record(item) for item in value]
    if not isinstance(value, str):
        return value
    if os.path.isabs(value) and not any(c.isspace() for c in value):
        return portable_path(value, keep=3 if os.path.basename(os.path.normpath(value)).isdigit() else 1) or value
    if " --" not in value:  # not a command line: left as it is
        return value
    return _PATH_IN_COMMAND.sub(lambda found: portable_record(found.group()), value)


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, RUN_INFO))


def run_export(run_dir: str) -> str:
    """The SavedModel that the training run in ``run_dir`` exported when it finished, as its
    newest checkpoint records it. Raises RunError (one line, with the fix) when the
    run has not finished or its export is gone."""
    newest = checkpoints.complete_checkpoints(os.path.join(run_dir, "checkpoints"))
    if not newest:
        raise RunError(f"run {run_dir} has no complete checkpoint yet: rerun its training "
                       "command to finish it, or pass a SavedModel version directory")
    try:
        with open(os.path.join(newest[0], "state.json")) as handle:
            state = json.load(handle)
    except (OSError, ValueError) as error:
        raise RunError(f"run {run_dir}: its newest checkpoint's state.json is unreadable "
                       f"({error}); pass the SavedModel version directory instead") from None
    path = (state.get("summary") or {}).get("export") if state.get("finished") else None
    if not path:
        raise RunError(f"run {run_dir} has not finished (step {state.get('step')}), so it "
                       "exported nothing yet: rerun its training command to finish it")
    if not os.path.isdir(path):
        raise RunError(f"run {run_dir} exported {path}, which no longer exists: pass "
                       "the SavedModel's new location instead")
    return path



LOCK_FILE = ".lock"
_held_run_dirs: dict = {}  # real path of a run directory -> fd of its locked LOCK_FILE


def _this_command() -> str:
    """This process's command line, one line (``python -m amn_tf.main --flag=...``)."""
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            args = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        args = [sys.executable, *sys.argv]
    if args:
        args[0] = os.path.basename(args[0])
    command = " ".join(" ".join(args).split())  # one line, whatever the arguments hold
    return command if len(command) <= 300 else command[:297] + "..."


def _holder(fd: int) -> dict:
    """Who holds the lock on ``fd``'s file, as it wrote there (it writes right after taking
    the lock, so an empty file is retried briefly)."""
    for _ in range(20):
        try:
            holder = json.loads(os.pread(fd, 65536, 0).decode() or "null")
        except (OSError, ValueError):
            holder = None
        if isinstance(holder, dict) and "pid" in holder:
            return holder
        time.sleep(0.05)
    return {}


def _in_use_message(run_dir: str, holder: dict) -> str:
    pid = holder.get("pid")
    if pid is None:
        return (f"run directory {run_dir} is in use by another process: wait for it to finish "
                "or stop it before rerunning")
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return (f"run directory {run_dir} is in use by process {pid}{where} "
            f"({holder.get('command', '?')}): wait for it to finish or stop it "
            f"(kill -INT {pid}{where}) before rerunning")


def lock_run_dir(run_dir: str) -> None:
    """Claims ``run_dir`` for this process, creating it if needed, or raises RunError naming
    the live process that holds it (two trainings in one directory would interleave their
    checkpoints and export twice).

    The claim is an ``flock`` on ``<run_dir>/.lock``, which also records the holder's PID,
    host and command for the refusal line. The kernel drops an flock when its process dies,
    however it dies (``kill -9``, a lost Ray worker), so a claim is never stale. Within one
    process the claim is re-entrant: claiming a directory this process holds does nothing.
    It lasts until ``release_run_dir`` (see ``run_dir_claims``) or the end of the process.
    """
    key = os.path.realpath(run_dir)
    if key in _held_run_dirs:
        return
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create run directory {run_dir}: {error.strerror}") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no claim
        return
    fd = os.open(os.path.join(run_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunError(_in_use_message(run_dir, holder)) from None
    except OSError as error:  # a filesystem without locks: train unguarded rather than not at all
        os.close(fd)
        print(f"[amn_tf] warning: cannot lock {run_dir} ({error.strerror}): nothing stops a "
              "second run from using it at the same time", file=sys.stderr, flush=True)
        return
    holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "command": _this_command()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder, 0)
    _held_run_dirs[key] = fd


def release_run_dir(run_dir: str) -> None:
    """Gives up this process's claim on ``run_dir`` (if it holds one)."""
    fd = _held_run_dirs.pop(os.path.realpath(run_dir), None)
    if fd is not None:
        try:
            os.ftruncate(fd, 0)  # no holder recorded: the next claimant writes its own
        finally:
            os.close(fd)  # releases the flock


@contextlib.contextmanager
def run_dir_claims():
    """Releases on exit the run-directory claims taken inside (claims held before stay).

    When the work inside raises before a run resumed there wrote a checkpoint, the flags
    ``prepare_run_dir`` recorded for it are taken back (``_take_back_flags``): they trained
    nothing that was kept, and the run's record is what a user resumes with. A resume whose
    checkpoints all failed to load says which flags it changed."""
    before = set(_held_run_dirs)
    try:
        yield
    except BaseException as error:
        changed = {}
        for key in [k for k in _held_run_dirs if k not in before]:
            changed.update(_take_back_flags(key, error))
        if isinstance(error, checkpoints.NoUsableCheckpoint) and changed:
            listed = ", ".join(f"--{flag}={now} (trained with {was})"
                               for flag, (was, now) in list(changed.items())[:3])
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise checkpoints.NoUsableCheckpoint(
                error.directory, error.newest_error,
                f"this resume changed {listed}{more}: resume with the run's flags (its "
                "flags.json), or move the directory away to start over") from None
        raise
    finally:
        for key in [k for k in _held_run_dirs if k not in before]:
            release_run_dir(key)
            _flag_snapshots.pop(key, None)


def check_run_dir_free(run_dir: str) -> None:
    """Raises RunError, as ``lock_run_dir`` would, if another process holds ``run_dir`` now;
    claims nothing (a fan-out checks every job's directory before starting any, main every run's
    before TensorFlow loads). Without a lock file nobody holds it, and none is created here."""
    lock = os.path.join(run_dir, LOCK_FILE)
    if os.path.realpath(run_dir) in _held_run_dirs or not os.path.isfile(lock):
        return
    with run_dir_claims():
        lock_run_dir(run_dir)


def prepare_run_dir(run_dir: str, identity: dict, resolved_flags: dict, fixed=None,
                    replay_flags=()) -> None:
    """Creates and claims ``run_dir`` (``lock_run_dir``: refused while another process trains
    there) or checks it belongs to the same experiment (``identity``) and that a resume keeps
    the flags that shape what the checkpoints hold: ``fixed`` (flag -> its value for runs
    recorded before the flag existed) always, ``replay_flags`` (the replay memory's shape) when
    the run saved its replay in them (``--save_replay``)."""
    lock_run_dir(run_dir)
    info_path = os.path.join(run_dir, RUN_INFO)
    if os.path.exists(info_path):
        with open(info_path) as handle:
            existing = json.load(handle)
        for key, value in identity.items():
            if existing.get(key) != value:
                raise RunError(
                    f"run directory {run_dir} holds a run with {key}={existing.get(key)!r}, not "
                    f"{value!r}; pick another --run_dir or remove it"
                )
        _check_fixed_flags(run_dir, resolved_flags, fixed or {}, replay_flags)
        _say_changed_flags(run_dir, resolved_flags)
    else:
        checkpoints.write_json_atomically(info_path, identity)
    _snapshot_flags(run_dir, resolved_flags)
    record_flags(run_dir, resolved_flags)


def _say_changed_flags(run_dir: str, resolved_flags: dict) -> None:
    """One line when a resume trains on with flags other than the run's last invocation's (a
    default changed since, or a flag given anew): the budget aside, nothing else tells."""
    try:
        with open(os.path.join(run_dir, "flags.json"), "rb") as handle:
            changed = _changed_flags(handle.read(), resolved_flags)
    except FileNotFoundError:
        return
    if changed:
        listed = ", ".join(f"--{flag}={now} (was {was})" for flag, (was, now) in sorted(changed.items()))
        print(f"[amn_tf] resuming {run_dir} with flags changed since its last invocation: {listed}; "
              f"{FLAGS_HISTORY} keeps which agent steps each trained", flush=True)


# realpath(run_dir) -> what a resume found there before recording its flags (see
# run_dir_claims): the run dir, its newest checkpoint's step, the record files' bytes and the
# flags recorded over them.
_flag_snapshots: dict = {}
# Changed by design on a resume, never the reason a checkpoint does not load.
_RESUME_FLAGS = ("training_steps", "amn_steps", "train_minutes")


def _snapshot_flags(run_dir: str, resolved_flags: dict) -> None:
    flags_path = os.path.join(run_dir, "flags.json")
    key = os.path.realpath(run_dir)
    if key in _flag_snapshots or not os.path.exists(flags_path):  # the first claim's, resumes only
        return
    saved = {}
    for name in ("flags.json", FLAGS_HISTORY):
        try:
            with open(os.path.join(run_dir, name), "rb") as handle:
                saved[name] = handle.read()
        except FileNotFoundError:
            saved[name] = None
    step = checkpoints.newest_complete_step(os.path.join(run_dir, "checkpoints"))
    _flag_snapshots[key] = (run_dir, step, saved, resolved_flags)


def _changed_flags(recorded: bytes, resolved_flags: dict) -> dict:
    """flag -> (recorded value, this invocation's) for the flags a resume changed (a flag the
    record lacks, added since, counts as unchanged; the budget is not a change)."""
    try:
        before = json.loads(recorded)
    except ValueError:
        before = {}
    now = json.loads(json.dumps(resolved_flags))
    return {flag: (before.get(flag), value) for flag, value in now.items()
            if flag not in _RESUME_FLAGS and before.get(flag, value) != value}


def _take_back_flags(key: str, error: BaseException) -> dict:
    """Puts back the flags.json and flags_history.jsonl a resume of the run in ``key`` found,
    if it wrote no checkpoint before ``error``; returns the flags it had changed when
    ``error`` is that run's checkpoints all failing to load (else {})."""
    snapshot = _flag_snapshots.pop(key, None)
    if snapshot is None:
        return {}
    run_dir, step, saved, resolved_flags = snapshot
    if checkpoints.newest_complete_step(os.path.join(run_dir, "checkpoints")) != step:
        return {}  # this invocation's flags trained a kept checkpoint: their record stays
    for name, data in saved.items():
        path = os.path.join(run_dir, name)
        try:
            if data is None:
                if os.path.exists(path):
                    os.remove(path)
            else:
                with open(path + ".tmp", "wb") as handle:
                    handle.write(data)
                os.replace(path + ".tmp", path)
        except OSError:  # a full disk: the record stays as the resume wrote it
            with contextlib.suppress(OSError):
                os.remove(path + ".tmp")
    failed_here = isinstance(error, checkpoints.NoUsableCheckpoint) and (
        os.path.realpath(error.directory) == os.path.realpath(os.path.join(run_dir, "checkpoints")))
    return _changed_flags(saved["flags.json"], resolved_flags) if failed_here else {}


# The flags that shape a Q-learning run's replay memory (one per game: capacity x streams).
DQN_REPLAY_FLAGS = ("replay_capacity", "num_envs")
AMN_REPLAY_FLAGS = ("amn_replay_capacity", "num_envs")
# Flags added after runs were recorded, with what a record without them meant.
LATER_FLAGS = {"dueling": False, "amn_expert_steps": 0, "amn_learning_rate_end": None,
               "held_out_states": 256}
# A DQN run's checkpoints hold a network of this shape: a resume must keep it.
DQN_FIXED_FLAGS = {"dueling": LATER_FLAGS["dueling"]}


def _check_fixed_flags(run_dir: str, resolved_flags: dict, fixed: dict, replay_flags) -> None:
    flags_path = os.path.join(run_dir, "flags.json")
    if not (fixed or replay_flags) or not os.path.exists(flags_path):
        return
    with open(flags_path) as handle:
        before = json.load(handle)
    checked = dict(fixed)
    if before.get("save_replay"):
        checked.update({key: None for key in replay_flags if key in before})
    for key, default in checked.items():
        was, now = before.get(key, default), resolved_flags.get(key, default)
        if was != now:
            why = "its checkpoints hold a replay of that shape" if key in replay_flags else \
                "its checkpoints need it"
            raise RunError(f"run directory {run_dir} holds a run trained with --{key}={was} ({why}); "
                           f"resume it with --{key}={was} or pick another --run_dir")


FLAGS_HISTORY = "flags_history.jsonl"


def record_flags(run_dir: str, resolved_flags: dict) -> None:
    """Writes ``flags.json`` (this invocation's flags) and, when they differ from the last
    invocation's, appends them to ``flags_history.jsonl`` with the agent step they apply from
    (the newest complete checkpoint's, which a resume continues from), so a run resumed with
    other flags keeps the record of what trained each part of it."""
    flags_path = os.path.join(run_dir, "flags.json")
    history_path = os.path.join(run_dir, FLAGS_HISTORY)
    history = jsonl.read(history_path)
    if not history and os.path.exists(flags_path):  # a run from before the history was kept
        with open(flags_path) as handle:
            history = [{"from_step": 0, "flags": json.load(handle)}]
    if not history or history[-1]["flags"] != json.loads(json.dumps(resolved_flags)):
        step = checkpoints.newest_complete_step(os.path.join(run_dir, "checkpoints"))
        # rewritten whole (a line torn by a crash would hide every line after it)
        jsonl.rewrite(history_path, [*history, {"from_step": step, "flags": resolved_flags}])
    checkpoints.write_json_atomically(flags_path, resolved_flags)


def flag_changes(run_dir: str, keys, defaults=None) -> list:
    """[(from_step, {flag: (before, after)})] for each invocation of the run in ``run_dir``
    that changed one of ``keys`` (flags_history.jsonl; empty for runs without one). A flag an
    invocation did not record (it did not exist yet) reads as ``defaults[flag]``."""
    history = jsonl.read(os.path.join(run_dir, FLAGS_HISTORY))
    defaults = defaults or {}
    changes = []
    for before, after in zip(history, history[1:]):
        old = {key: before["flags"].get(key, defaults.get(key)) for key in keys}
        new = {key: after["flags"].get(key, defaults.get(key)) for key in keys}
        changed = {key: (old[key], new[key]) for key in keys if old[key] != new[key]}
        if changed:
            changes.append((after["from_step"], changed))
    return changes
