"""Saving and restoring a replay memory (``--save_replay`` checkpoints): seconds and the
memory a restore needs beyond the replay itself, for ``ReplayMemory.restore`` (read into
the memory in place) beside the plain way measured in the same run (``np.load`` the whole
file, then copy it in), which needs a second copy of the replay while it runs.

    python benchmarks/bench_replay_io.py --transitions=200000 --streams=4

Peak memory is what ``tracemalloc`` saw allocated during the restore (numpy's buffers are
traced), in a pass apart from the timed ones; each way restores once untimed first (the file then sits in
the page cache and the memory's pages are mapped: the figures compare the two ways' own work,
not the disk). The file goes to --dir (default: a temporary
directory), which needs room for one replay file.
"""

from __future__ import annotations

import os
import tempfile
import time
import tracemalloc

import numpy as np
from absl import app, flags

from amn_tf import replay

FLAGS = flags.FLAGS
flags.DEFINE_integer("transitions", 200_000, "Replay capacity in transitions.", lower_bound=1000)
flags.DEFINE_integer("streams", 4, "Streams (--num_envs) the capacity is split over.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Timed restores of each way (the best is printed).", lower_bound=1)
flags.DEFINE_string("dir", None, "Where the replay file is written (default: a temporary directory).")


def _plain_restore(memory: replay.ReplayMemory, path: str) -> None:
    """The reference: the whole file loaded by numpy, then copied into the memory."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in replay._ARRAYS}
    for name, array in arrays.items():
        getattr(memory, name)[...] = array


def _peak(restore, memory, path) -> int:
    tracemalloc.start()
    try:
        restore(memory, path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv):
    del argv
    source = replay.ReplayMemory(capacity=FLAGS.transitions, num_streams=FLAGS.streams, seed=0)
    rng = np.random.default_rng(0)
    for row in source.frames:  # a stream at a time: no second copy while filling
        row[...] = rng.integers(0, 256, row.shape, np.uint8)
    source.cursor[...] = source.stream_capacity + 7
    replay_bytes = source.nbytes()
    with tempfile.TemporaryDirectory(dir=FLAGS.dir) as directory:
        path = os.path.join(directory, "replay.npz")
        start = time.perf_counter()
        source.save(path)
        save_seconds = time.perf_counter() - start
        file_bytes = os.path.getsize(path)
        target = replay.ReplayMemory(capacity=FLAGS.transitions, num_streams=FLAGS.streams, seed=1)
        ways = {"ReplayMemory.restore (in place)": lambda m, p: m.restore(p),
                "reference: np.load, then copy": _plain_restore}
        rows = []
        for label, restore in ways.items():
            restore(target, path)  # untimed: the file in the page cache, the memory's pages mapped
            seconds = []
            for _ in range(FLAGS.repeats):
                start = time.perf_counter()
                restore(target, path)
                seconds.append(time.perf_counter() - start)
            assert np.array_equal(target.frames, source.frames), label
            rows.append((label, min(seconds), _peak(restore, target, path)))
    gib = 1 << 30
    print(f"replay: {FLAGS.transitions:,} transitions over {FLAGS.streams} streams, "
          f"{replay_bytes / gib:.2f} GiB in memory, {file_bytes / gib:.2f} GiB on disk "
          f"({file_bytes / FLAGS.transitions:,.0f} B per transition); save {save_seconds:.1f} s "
          f"({file_bytes / gib / save_seconds:.2f} GiB/s)")
    print(f"| restore | seconds (best of {FLAGS.repeats}) | GiB/s | peak extra memory | "
          "as share of the replay |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, seconds, peak in rows:
        print(f"| {label} | {seconds:.2f} | {file_bytes / gib / seconds:.2f} | "
              f"{peak / (1 << 20):,.0f} MiB | {peak / replay_bytes:.1%} |")


if __name__ == "__main__":
    app.run(main)
