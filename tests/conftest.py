"""Shared fixtures: quiet TensorFlow, float32 Keras, one tiny exported expert, and a
helper that runs ``python -m amn_tf.main`` in a subprocess."""

from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import dataclasses  # noqa: E402
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
