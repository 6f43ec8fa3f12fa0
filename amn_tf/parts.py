"""The run loop's parts: period crossings, progress lines with an ETA, learner metrics averaged
between lines, the profiler window, stop signals, and TensorBoard trimmed to a restored step."""

from __future__ import annotations

import collections
import os
import signal
import sys
import time

from amn_tf import envs


def trim_tensorboard(directory: str, max_step: int) -> int:
    """Drops events logged after ``max_step`` from the event files in ``directory`` (after a
    resume from a checkpoint at ``max_step``, those steps are logged again). A torn last
    record of a killed writer is dropped too. Returns the number of events removed."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    if not os.path.isdir(directory):
        return 0
    removed = 0
    for name in sorted(os.listdir(directory)):
        if not name.startswith("events.out.tfevents"):
            continue
        path = os.path.join(directory, name)
        kept, dropped = [], 0
        iterator = iter(tf.data.TFRecordDataset(path))
        while True:
            try:
                record = next(iterator).numpy()
            except StopIteration:
                break
            except tf.errors.DataLossError:
                dropped += 1
                break
            event = event_pb2.Event.FromString(record)
            if event.step <= max_step or event.HasField("file_version"):
                kept.append(record)
            else:
                dropped += 1
        if dropped:
            tmp = path + ".trim"
            with tf.io.TFRecordWriter(tmp) as writer:
                for record in kept:
                    writer.write(record)
            os.replace(tmp, path)
            removed += dropped
    return removed


def crossed(before: int, after: int, period: int) -> bool:
    """Whether going from step ``before`` to ``after`` passed a multiple of ``period``."""
    return before // period != after // period


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
    """Frames done, frames/s, ETA and the latest scores, on one line per report.

    The frames/s and the ETA use the *recent* rate: frames per second between the oldest
    report of the last ``window`` seconds (2 minutes) and now, or between the previous
    report and now when that one is older. The average since the start would count the
    replay-filling phase (acting only, several times faster than learning) and the graph
    tracing, and promise an ETA a fraction of the real one for most of the run. A sliding
    window rather than an exponential moving average: with reports seconds or minutes
    apart, a window spans a fixed stretch of wall-clock time whatever ``log_period`` is,
    forgets a phase entirely once it is ``window`` seconds behind (an EMA's tail of fast
    reports lingers), and is one subtraction to explain. ``clock`` (seconds) is injectable
    for tests.
    """

    WINDOW_SECONDS = 120.0

    def __init__(self, label: str, total_steps: int, start_step: int,
                 clock=time.monotonic, window: float = WINDOW_SECONDS, seconds_left=None,
                 test_plays=None):
        self.label = label
        self.total_steps = total_steps
        self._seconds_left = seconds_left  # () -> seconds of a time budget left, or None
        # (step, end step) -> (test plays from step to the end, final included; seconds each or None)
        self._test_plays = test_plays
        self._clock = clock
        self._window = window
        self._start_step = start_step
        self._reports = collections.deque([(clock(), start_step)])  # (time, step), oldest first
        self._rate = 0.0  # agent steps per second, over the window

    def phase_started(self, step: int) -> None:
        """A slower phase starts at ``step`` (learning, after the replay filled): the rate is
        measured from here on, so the first line after it does not average the faster phase in."""
        self._reports = collections.deque([(self._clock(), step)])

    def frames_per_second(self, step: int) -> float:
        """Records a report at ``step`` and returns the recent rate in frames per second."""
        now = self._clock()
        while len(self._reports) > 1 and self._reports[0][0] < now - self._window:
            self._reports.popleft()
        then, before = self._reports[0]
        self._rate = (step - before) / max(now - then, 1e-9)
        self._reports.append((now, step))
        return self._rate * envs.FRAMES_PER_STEP

    def eta_seconds(self, step: int) -> float:
        """Seconds to ``total_steps`` at the recent rate (inf before any progress), or to the
        end of the time budget when that comes first."""
        eta = (self.total_steps - step) / self._rate if self._rate > 0 else float("inf")
        left = self._seconds_left() if self._seconds_left is not None else None
        return eta if left is None else min(eta, max(left, 0.0))

    def _eta_text(self, step: int) -> str:
        """The ETA of the training, and of the test plays still to come: counted in at what
        the run's test plays took so far, or named when none has been timed yet."""
        eta = self.eta_seconds(step)
        if eta == float("inf"):
            return "?"
        if self._test_plays is None:
            return duration(eta)
        count, each = self._test_plays(step, min(self.total_steps, int(step + self._rate * eta)))
        if not count:
            return duration(eta)
        plays = f"{count} test play{'s' if count != 1 else ''}"
        return f"{duration(eta + count * each)} incl. {plays}" if each else f"{duration(eta)} + {plays}"

    def line(self, step: int, fps: float, extra: str = "") -> str:
        frames = step * envs.FRAMES_PER_STEP
        total = self.total_steps * envs.FRAMES_PER_STEP
        eta_text = self._eta_text(step)
        return (f"[{self.label}] frames {frames:,}/{total:,} ({100 * step / self.total_steps:.0f}%) | "
                f"{fps:,.0f} frames/s | ETA {eta_text}" + (f" | {extra}" if extra else ""))

    def print(self, step: int, extra: str = "") -> float:
        """Prints the line of ``step``; returns its frames/s (the recent rate)."""
        fps = self.frames_per_second(step)
        print(self.line(step, fps, extra), flush=True)
        return fps


class StepProfiler:
    """TensorFlow profiler trace of learner updates ``start`` (inclusive) to ``stop``
    (exclusive), counted over the whole run, written under ``logdir`` (the run's TensorBoard
    directory: open it with the profile plugin, ``pip install -e .[profiling]``)."""

    def __init__(self, steps, logdir: str, first_update: int):
        self.start, self.stop = steps if steps else (None, None)
        self.logdir = logdir
        self.update = first_update
        self.active = False

    def step(self, learner_step):
        """Runs one learner update, tracing it when inside the window."""
        if self.start is not None and self.update == self.start and not self.active:
            import tensorflow as tf

            tf.profiler.experimental.start(self.logdir)
            self.active = True
        metrics = learner_step()
        self.update += 1
        if self.active and self.update >= self.stop:
            self.finish()
        return metrics

    def finish(self):
        if self.active:
            import tensorflow as tf

            tf.profiler.experimental.stop()
            self.active = False
            print(f"[profile] trace of updates {self.start}..{self.stop - 1} written to "
                  f"{os.path.join(self.logdir, 'plugins', 'profile')}; view it with "
                  f"tensorboard --logdir {self.logdir} (Profile tab)", flush=True)


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop polls, so it can checkpoint and exit."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second signal: stop now
            sys.exit(130)
        self.requested = True
        print(f"\n[amn_tf] {signal.Signals(signum).name} received: checkpointing and stopping",
              flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class MetricMeans:
    """A learner's scalar metrics averaged over the updates between two log lines: the loss a
    progress line prints and TensorBoard records is the mean since the previous line, not the
    last minibatch's (one minibatch of a sparse-reward game can give a loss 100 times smaller
    or larger than its neighbours)."""

    def __init__(self):
        self.sums: dict = {}
        self.count = 0

    def add(self, metrics: dict) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def take(self) -> dict:
        """The means since the last take (empty if no update since), and a fresh start."""
        means = {key: total / self.count for key, total in self.sums.items()} if self.count else {}
        self.sums, self.count = {}, 0
        return means
