"""CheckpointManager: round trip, sentinel, fallback past a corrupted checkpoint, keep."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from amn_tf import checkpoints, replay


def make_state(seed: int):
    """A small Keras model, an Adam optimizer after one update, and a step counter."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    return model, optimizer, counter


def train_once(model, optimizer, counter, seed):
    x = tf.constant(np.random.default_rng(seed).normal(size=(8, 3)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x)))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    counter.assign_add(1)


def snapshot(model, optimizer, counter):
    return ([w.copy() for w in model.get_weights()],
            [v.numpy().copy() for v in optimizer.variables], int(counter.numpy()))


def assert_same(a, b):
    weights_a, optimizer_a, counter_a = a
    weights_b, optimizer_b, counter_b = b
    assert counter_a == counter_b
    assert len(weights_a) == len(weights_b) and len(optimizer_a) == len(optimizer_b)
    for x, y in zip(weights_a + optimizer_a, weights_b + optimizer_b):
        np.testing.assert_array_equal(x, y)


def trackables(model, optimizer, counter):
    return {"model": model, "optimizer": optimizer, "counter": counter}


def test_round_trip_model_optimizer_counter(tmp_path):
    model, optimizer, counter = make_state(0)
    train_once(model, optimizer, counter, seed=1)
    assert int(optimizer.iterations.numpy()) == 1
    saved = snapshot(model, optimizer, counter)
    manager = checkpoints.CheckpointManager(str(tmp_path))
    path = manager.save(7, trackables(model, optimizer, counter), {"step": 7, "note": "hi"})
    assert os.path.basename(path) == "ckpt-000000000007"
    assert os.path.exists(os.path.join(path, checkpoints.SENTINEL))
    assert manager.complete() == [path]

    fresh = make_state(99)  # different initial weights, optimizer never stepped
    assert not np.array_equal(fresh[0].get_weights()[0], saved[0][0])
    state = checkpoints.CheckpointManager(str(tmp_path)).restore(trackables(*fresh))
    assert state["step"] == 7 and state["note"] == "hi" and state["path"] == path
    assert state["replay_restored"] is False
    assert_same(snapshot(*fresh), saved)
    assert int(fresh[1].iterations.numpy()) == 1
    # The restored optimizer continues exactly like the original.
    train_once(model, optimizer, counter, seed=2)
    train_once(*fresh, seed=2)
    assert_same(snapshot(*fresh), snapshot(model, optimizer, counter))


def test_round_trip_with_replay(tmp_path):
    model, optimizer, counter = make_state(0)
    memory = replay.ReplayMemory(capacity=16, num_streams=1, seed=0)
    memory.start_episodes([0], np.full((1, 84, 84, 4), 7, np.uint8))
    memory.append([0], [3], [1.5], [False], [False], [False], np.full((1, 84, 84, 4), 9, np.uint8))
    manager = checkpoints.CheckpointManager(str(tmp_path))
    manager.save(1, trackables(model, optimizer, counter), {"step": 1, "replay_saved": True}, [memory])
    other = replay.ReplayMemory(capacity=16, num_streams=1, seed=0)
    state = manager.restore(trackables(*make_state(1)), [other])
    assert state["replay_restored"] is True
    assert len(other) == 1 and other.entries_written == memory.entries_written
    np.testing.assert_array_equal(other.frames, memory.frames)


def test_empty_directory_restores_nothing(tmp_path):
    manager = checkpoints.CheckpointManager(str(tmp_path / "new"))
    assert manager.restore(trackables(*make_state(0))) is None


def test_directory_without_sentinel_is_ignored(tmp_path):
    model, optimizer, counter = make_state(0)
    manager = checkpoints.CheckpointManager(str(tmp_path))
    manager.save(1, trackables(model, optimizer, counter), {"step": 1})
    first = snapshot(model, optimizer, counter)
    train_once(model, optimizer, counter, seed=3)
    newer = manager.save(2, trackables(model, optimizer, counter), {"step": 2})
    # A crash after the weights but before the sentinel: the newest looks half-written.
    os.remove(os.path.join(newer, checkpoints.SENTINEL))
    assert [os.path.basename(p) for p in manager.complete()] == ["ckpt-000000000001"]
    fresh = make_state(5)
    state = manager.restore(trackables(*fresh))
    assert state["step"] == 1
    assert_same(snapshot(*fresh), first)


def test_partial_temporary_directories_are_removed(tmp_path):
    partial = tmp_path / ".tmp-ckpt-000000000009-123"
    partial.mkdir()
    (partial / "weights.index").write_bytes(b"half")
    manager = checkpoints.CheckpointManager(str(tmp_path))
    assert not partial.exists()
    assert manager.restore(trackables(*make_state(0))) is None


@pytest.mark.parametrize("damage", ["truncate_data", "garbage_index", "bad_state_json"])
def test_corrupted_newest_falls_back_to_previous(tmp_path, damage):
    model, optimizer, counter = make_state(0)
    train_once(model, optimizer, counter, seed=1)
    manager = checkpoints.CheckpointManager(str(tmp_path), keep=3)
    manager.save(100, trackables(model, optimizer, counter), {"step": 100})
    first = snapshot(model, optimizer, counter)
    train_once(model, optimizer, counter, seed=2)
    newest = manager.save(200, trackables(model, optimizer, counter), {"step": 200})
    if damage == "truncate_data":
        data = os.path.join(newest, "weights.data-00000-of-00001")
        size = os.path.getsize(data)
        with open(data, "r+b") as handle:
            handle.truncate(size // 3)
    elif damage == "garbage_index":
        with open(os.path.join(newest, "weights.index"), "wb") as handle:
            handle.write(b"\x01" * 64)
    else:
        with open(os.path.join(newest, "state.json"), "w") as handle:
            handle.write('{"step": 2')
    fresh = make_state(7)
    state = manager.restore(trackables(*fresh))
    assert state["step"] == 100 and state["path"].endswith("ckpt-000000000100")
    assert_same(snapshot(*fresh), first)
    assert os.path.exists(newest)  # reported and skipped, not deleted


def test_every_checkpoint_unusable_is_an_error(tmp_path):
    model, optimizer, counter = make_state(0)
    manager = checkpoints.CheckpointManager(str(tmp_path))
    path = manager.save(1, trackables(model, optimizer, counter), {"step": 1})
    os.remove(os.path.join(path, "weights.index"))
    with pytest.raises(checkpoints.CheckpointError, match="no usable checkpoint"):
        manager.restore(trackables(*make_state(1)))


def test_keep_removes_older_checkpoints(tmp_path):
    model, optimizer, counter = make_state(0)
    manager = checkpoints.CheckpointManager(str(tmp_path), keep=2)
    for step in (10, 20, 30, 40):
        train_once(model, optimizer, counter, seed=step)
        manager.save(step, trackables(model, optimizer, counter), {"step": step})
    names = sorted(n for n in os.listdir(tmp_path))
    assert names == ["ckpt-000000000030", "ckpt-000000000040"]
    assert manager.complete()[0].endswith("ckpt-000000000040")


def test_saving_the_same_step_twice_replaces_it(tmp_path):
    model, optimizer, counter = make_state(0)
    manager = checkpoints.CheckpointManager(str(tmp_path))
    manager.save(5, trackables(model, optimizer, counter), {"step": 5, "finished": False})
    manager.save(5, trackables(model, optimizer, counter), {"step": 5, "finished": True})
    assert len(manager.complete()) == 1
    assert manager.restore(trackables(*make_state(1)))["finished"] is True


def test_write_json_atomically(tmp_path):
    path = str(tmp_path / "x.json")
    checkpoints.write_json_atomically(path, {"a": 1})
    checkpoints.write_json_atomically(path, {"a": 2})
    assert os.listdir(tmp_path) == ["x.json"]  # no temporary file left behind
    with open(path) as handle:
        assert json.load(handle) == {"a": 2}


def test_checkpoint_space_warning_counts_the_checkpoints_still_to_come():
    gb = 1_000_000_000
    # A fresh run keeping 2 checkpoints of 7 GB of replay: saving the third holds 3 at once, 21 GB.
    assert checkpoints.space_warning(21 * gb, 7 * gb, existing=0, keep=2) is None
    warning = checkpoints.space_warning(int(2.6 * gb), 7 * gb, existing=0, keep=2)
    assert warning.startswith("2.6 GB free under the run, but each checkpoint keeps the replay "
                              "(--save_replay, 7.0 GB) and saving one holds up to 3 at once: 21.0 GB")
    # Resumed with both kept checkpoints on disk: only the one being written needs room, 7 GB.
    assert checkpoints.space_warning(7 * gb, 7 * gb, existing=2, keep=2) is None
    assert "7.0 GB are needed" in checkpoints.space_warning(6 * gb, 7 * gb, existing=2, keep=2)
    # One on disk: two more, 14 GB.
    assert "14.0 GB are needed" in checkpoints.space_warning(10 * gb, 7 * gb, existing=1, keep=2)

