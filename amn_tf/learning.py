"""What the three learners (DQN, AMN, multitask DQN) share: the guarded update (a
non-finite loss or gradient skips the update on every replica alike), update counters,
the replica loss scale, and one step over one device or a ``tf.distribute`` strategy.

With a strategy, each replica gets a contiguous slice of the global batch, computes its
loss scaled by ``local batch / global batch`` (so the replicas' gradients sum to the
gradient of the global mean), and the Keras optimizer sums the gradients across replicas.
"""

from __future__ import annotations

import tensorflow as tf

from amn_tf import rundirs, runtime


def counter(name: str) -> tf.Variable:
    return tf.Variable(0, dtype=tf.int64, trainable=False, name=name,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def replica_scale(local_batch) -> tf.Tensor:
    """local / global batch size inside a replica, 1 outside any strategy."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas == 1:
        return tf.constant(1.0)
    return 1.0 / tf.cast(replicas, tf.float32)  # the global batch splits evenly


def guarded_apply(optimizer, loss, gradients, variables, updates, skipped) -> tf.Tensor:
    """Applies ``gradients`` unless the loss or any gradient is not finite; returns whether
    the update was applied. Runs outside any replica context (gradients already summed)."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    finite = tf.logical_and(finite, tf.math.is_finite(loss))

    def apply():
        optimizer.apply_gradients(zip(gradients, variables))
        updates.assign_add(1)
        return tf.constant(True)

    def skip():
        skipped.assign_add(1)
        return tf.constant(False)

    return tf.cond(finite, apply, skip)


class Stepper:
    """One learner update: pull a batch from ``dataset``, ``compute(batch) -> (loss,
    gradients, metrics)`` on one device or on every replica of ``strategy`` (losses,
    gradients and metrics summed over replicas: losses are replica-scaled, so the sums are
    the global means), then the guarded optimizer step. Returns metrics and ``applied``."""

    def __init__(self, compute, variables, optimizer, updates, skipped, dataset, strategy=None,
                 jit_compile=False):
        self._compute = compute if strategy is not None else tf.function(compute, jit_compile=jit_compile)
        self._variables = variables
        self._optimizer = optimizer
        self._updates, self._skipped = updates, skipped
        self._strategy = strategy
        if strategy is not None:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            dataset = strategy.experimental_distribute_dataset(dataset.with_options(options))
        self._iterator = iter(dataset)

    def run(self, batch):
        if self._strategy is None:
            loss, gradients, metrics = self._compute(batch)
        else:
            loss, gradients, metrics = self._strategy.run(self._compute, args=(batch,))
            total = lambda value: self._strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)  # noqa: E731
            loss, gradients = total(loss), [total(g) for g in gradients]
            metrics = {key: total(value) for key, value in metrics.items()}
        applied = guarded_apply(self._optimizer, loss, gradients, self._variables, self._updates,
                                self._skipped)
        return {**metrics, "applied": applied}

    @tf.function
    def __call__(self):
        return self.run(next(self._iterator))


def check_applied(metrics: dict, updates: tf.Variable, skip_nonfinite: bool, loss_key: str,
                  flag: str) -> dict:
    if not bool(metrics["applied"]) and not skip_nonfinite:
        raise runtime.NonFiniteError(
            f"non-finite loss or gradient at update {int(updates.numpy()) + 1} "
            f"({loss_key}={float(metrics[loss_key])}); the update was not applied and the last "
            f"checkpoint is intact. Lower --{flag}, or pass --skip_nonfinite")
    return metrics


def make_strategy(kind: str, devices: int):
    """None for 'none'; a MirroredStrategy over ``devices`` GPUs (or logical CPUs when no
    GPU is visible and the CPU was split, as the tests do)."""
    if kind == "none":
        return None
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        if devices > len(gpus):
            raise rundirs.RunError(f"--distribution=mirrored asked for {devices} GPUs but "
                                   f"{len(gpus)} are visible; lower --devices")
        return tf.distribute.MirroredStrategy([d.name for d in gpus[:devices]])
    cpus = tf.config.list_logical_devices("CPU")
    if devices > len(cpus):
        raise rundirs.RunError(f"--distribution=mirrored asked for {devices} devices but no GPU "
                               f"is visible and the CPU is {len(cpus)} device(s); lower --devices "
                               "or run where GPUs are")
    return tf.distribute.MirroredStrategy([d.name for d in cpus[:devices]])
