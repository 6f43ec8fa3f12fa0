"""The process's TensorFlow setup: seeds, precision, and the error a non-finite update raises."""

from __future__ import annotations


class NonFiniteError(RuntimeError):
    """A loss or gradient that is NaN or infinite."""


def set_seeds(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def resolve_precision(precision: str) -> str:
    """'auto' -> 'mixed_bfloat16' on CPUs with bf16 instructions or with a GPU, else 'float32'."""
    if precision != "auto":
        return precision
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_bfloat16"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu_flags = handle.read()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in cpu_flags or "amx_bf16" in cpu_flags) else "float32"


def set_precision(precision: str) -> str:
    import keras

    resolved = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(resolved)
    return resolved
