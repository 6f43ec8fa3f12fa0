"""Shared fixtures: quiet TensorFlow, float32 Keras, one tiny exported expert, a helper that
runs ``python -m amn_tf.main`` in a subprocess, and its in-process twin for commands that fail
before they train (bad flags), which gives the same exit code and output in a fraction of a
second.

Tests that start a subprocess (``python -m amn_tf.main``, a script under ``scripts/``) or
otherwise take more than a few seconds are marked ``slow``; ``pytest -m "not slow"`` runs the
rest (the fast tier)."""

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS_DIR = os.path.join(REPO_ROOT, "flags")


@pytest.fixture(scope="session")
def float32_policy():
    """Keras compute in float32 (the exported outputs must match the model's exactly)."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy(previous)


@dataclasses.dataclass
class TinyExpert:
    model: object  # the Keras model that was exported
    path: str  # the SavedModel version directory
    game: str
    legal: np.ndarray


@pytest.fixture(scope="session")
def pong_expert(tmp_path_factory, float32_policy) -> TinyExpert:
    """A freshly initialised Nature DQN for Pong, exported once per test session."""
    import keras

    from amn_tf import envs, export, networks

    keras.mixed_precision.set_global_policy("float32")  # whatever an earlier test left set
    keras.utils.set_random_seed(1)
    legal = envs.legal_actions("Pong")
    model = networks.nature_dqn(len(legal))
    path = os.path.join(tmp_path_factory.mktemp("saved_models"), "experts", "Pong", "1")
    export.export_expert(model, "Pong", path, provenance={"test": True}, protocol="paper")
    return TinyExpert(model, path, "Pong", legal)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One smoke DQN run (``flags/smoke.flags``: Pong, 600 agent steps) through main in a
    subprocess, once per test worker: tests read it, or copy it before they change it."""
    import types

    base = tmp_path_factory.mktemp("smoke")
    run_dir, export_dir = str(base / "run"), str(base / "exports")
    args = (f"--flagfile={os.path.join(FLAGS_DIR, 'smoke.flags')}", f"--run_dir={run_dir}",
            f"--export_dir={export_dir}")
    result = run_main(*args)
    return types.SimpleNamespace(args=args, run_dir=run_dir, export_dir=export_dir, result=result)


def frames_batch(batch: int, seed: int = 0) -> np.ndarray:
    """Random uint8 observations [batch, 84, 84, 4]."""
    return np.random.default_rng(seed).integers(0, 256, (batch, 84, 84, 4), dtype=np.uint8)


def main_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "amn_tf.main", *args]


def run_main(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Runs ``python -m amn_tf.main ARGS`` from the repository root and waits for it."""
    return subprocess.run(
        main_command(*args),
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ------------------------------------------------------------------ main in-process
@contextlib.contextmanager
def parsed_flags(*args: str):
    """absl's FLAGS parsed from ``args`` alone (every other flag at its default), from the
    repository root as ``run_main``'s process; unparsed again afterwards, so no value leaks
    into the next test."""
    from absl import flags

    from amn_tf import cli  # noqa: F401 - defines the flags

    cwd = os.getcwd()
    flags.FLAGS.unparse_flags()
    try:
        os.chdir(REPO_ROOT)
        flags.FLAGS(["amn_tf.main", *args])
        yield flags.FLAGS
    finally:
        os.chdir(cwd)
        flags.FLAGS.unparse_flags()


def main_in_process(*args: str) -> subprocess.CompletedProcess:
    """``run_main(*args)`` without a new process, for commands that fail before they train (a
    bad flag or combination, a missing input): absl parses the flags as ``app.run`` does
    (a parse error: its "FATAL Flags parsing error" and exit 1), then main's own error handling
    builds the config and dispatches (a user error: one ``amn_tf: error:`` line and exit 2).
    An exception main lets through propagates, as a traceback would end the process. The flags
    are unparsed again afterwards."""
    from absl import app, flags

    from amn_tf import main

    stdout, stderr, returncode = io.StringIO(), io.StringIO(), 0
    cwd = os.getcwd()
    flags.FLAGS.unparse_flags()
    try:
        os.chdir(REPO_ROOT)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                argv = app.parse_flags_with_usage(["amn_tf.main", *args])
                main._main_with_clean_errors(argv)
            except SystemExit as exit:  # the exit status the interpreter would give
                if exit.code is None or isinstance(exit.code, int):
                    returncode = exit.code or 0
                else:
                    print(exit.code, file=sys.stderr)
                    returncode = 1
    finally:
        os.chdir(cwd)
        flags.FLAGS.unparse_flags()
    return subprocess.CompletedProcess(["amn_tf.main", *args], returncode, stdout.getvalue(),
                                       stderr.getvalue())


def describe(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def assert_clean_error(result) -> str:
    """Non-zero exit, no traceback, one 'amn_tf: error:' line, last on stderr."""
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("amn_tf: error:")]
    assert len(errors) == 1, describe(result)
    assert result.stderr.strip().splitlines()[-1] == errors[0], describe(result)
    return errors[0]
