"""Replay memory that stores each 84x84 frame once, and its tf.data pipeline.

Layout: one ring per *stream* (one stream per parallel environment), so consecutive
entries of a stream are consecutive steps of one environment. Entry ``j`` of a stream
holds the newest frame of the observation at that step, plus the action taken there, the
reward received and how the step ended. The state at ``j`` is frames ``j-3 .. j``; the
transition at ``j`` is ``(state j, a_j, r_j, flags_j, state j+1)``.

Episode starts write all four frames of the first (zero-padded) observation as four
entries, of which only the last can start a transition, so a rebuilt stack never mixes
two episodes. Episode ends (terminated *or* truncated) write the final observation's
frame as an entry that starts no transition: a truncated transition can still bootstrap
from its real next state. When the ring overwrites entry ``p``, the entries whose stacks
reach back into ``p`` (``p+1 .. p+3``) stop being sampled.

Bytes per stored transition: 84*84 frame + 1 action + 4 reward + 1 flags = 7,062, plus
four frames per episode for the start/end entries (and the AMN's outputs, see below).

Optional per-entry *outputs* (``outputs=`` spec, used by the AMN only): arrays stored beside
each entry's frame holding what a function of that entry's state (frames j-3 .. j) gave when
the entry was written, e.g. the expert's Q-values and features. The writer computes them
from the observation stacks it passes in (``append``'s ``next_obs``, ``start_episodes``'
first observation: only the last of its four entries is ever a sampled state) and passes
them in as ``outputs``; ``sample_states(..., outputs=True)`` returns them aligned with the
sampled states. Memories without outputs (the DQN's) store and save nothing extra.
"""

from __future__ import annotations

import os
import threading
import zipfile

import numpy as np

from amn_tf import envs

VALID = 1  # entry starts a transition (its successor is the next entry)
TERMINATED = 2  # the transition ended the game
TRUNCATED = 4  # the transition hit the frame limit (bootstraps from the final state)
LIFE_LOST = 8  # a life was lost on the transition

# 2: optional per-entry outputs (``output_<name>`` arrays). A format-1 file (no outputs) still
# restores into a memory without outputs (same layout); a memory with outputs refuses it.
_FORMAT_VERSION = 2
_ARRAYS = ("frames", "actions", "rewards", "flags", "cursor")


class ReplayMemory:
    """uint8 ring buffers of frames, one per stream.

    Args:
      capacity: transitions in all (split evenly over streams).
      num_streams: parallel environments writing into this memory.
      seed: seed of the sampling generator.
      outputs: optional ``{name: (shape, dtype)}`` of per-entry outputs stored beside each
        frame (see the module docstring); every ``append``/``start_episodes`` must then
        pass them.
    """

    def __init__(self, capacity: int, num_streams: int = 1, seed: int = 0, outputs: dict | None = None):
        if num_streams < 1:
            raise ValueError(f"num_streams must be >= 1, got {num_streams}")
        stream_capacity = capacity // num_streams
        if stream_capacity < envs.STACK + 4:
            raise ValueError(
                f"replay capacity {capacity} is too small for {num_streams} streams: "
                f"each stream needs at least {envs.STACK + 4} entries"
            )
        self.capacity = stream_capacity * num_streams
        self.num_streams = num_streams
        self.stream_capacity = stream_capacity
        shape = (num_streams, stream_capacity)
        self.frames = np.zeros((*shape, *envs.FRAME_SHAPE), np.uint8)
        self.actions = np.zeros(shape, np.uint8)
        self.rewards = np.zeros(shape, np.float32)
        self.flags = np.zeros(shape, np.uint8)
        self.cursor = np.zeros(num_streams, np.int64)  # entries ever written, per stream
        self.outputs = {name: np.zeros((*shape, *tuple(size)), np.dtype(dtype))
                        for name, (size, dtype) in (outputs or {}).items()}
        self.rng = np.random.default_rng(seed)
        # Writers (the acting loop) and readers (tf.data's sampling thread) take this lock, so a
        # sampled window never holds a frame written after its transition was found valid.
        self.lock = threading.Lock()

    # ----------------------------------------------------------------- writing
    def _checked_outputs(self, outputs, count: int):
        """``outputs`` for ``count`` new states, as this memory stores them (or an error)."""
        if not self.outputs:
            if outputs is not None:
                raise ValueError("this replay memory stores no outputs; pass none")
            return None
        if outputs is None or set(outputs) != set(self.outputs):
            raise ValueError(f"this replay memory stores outputs {sorted(self.outputs)} for every "
                             f"state written; got {sorted(outputs or {})}")
        checked = {}
        for name, mine in self.outputs.items():
            value = np.asarray(outputs[name])
            if value.shape != (count, *mine.shape[2:]):
                raise ValueError(f"outputs[{name!r}] is {list(value.shape)}, expected "
                                 f"{[count, *mine.shape[2:]]}")
            checked[name] = value
        return checked

    def _write(self, streams: np.ndarray, frames: np.ndarray, outputs=None) -> None:
        """Appends one frame per stream (and its state's outputs, or zeros); the new entry
        starts no transition yet."""
        position = self.cursor[streams] % self.stream_capacity
        self.frames[streams, position] = frames
        for name, array in self.outputs.items():
            array[streams, position] = 0 if outputs is None else outputs[name]
        self.flags[streams, position] = 0
        for offset in range(1, envs.STACK):  # stacks of the oldest entries now reach into new data
            self.flags[streams, (position + offset) % self.stream_capacity] &= ~np.uint8(VALID)
        self.cursor[streams] += 1

    def start_episodes(self, streams, observations: np.ndarray, outputs: dict | None = None) -> None:
        """Writes the first observation ``[n, 84, 84, 4]`` of new episodes (``outputs``: those
        of the observations, stored with the last of the four entries, the only state)."""
        streams = np.atleast_1d(np.asarray(streams, np.int64))
        outputs = self._checked_outputs(outputs, len(streams))
        with self.lock:
            for k in range(envs.STACK):
                self._write(streams, observations[..., k], outputs if k == envs.STACK - 1 else None)

    def append(self, streams, actions, rewards, terminated, truncated, life_lost, next_obs,
               outputs: dict | None = None):
        """Records the step taken from each stream's latest entry and its next observation.

        ``next_obs`` is the observation after the step (for an ended episode, the final
        one: ``StepResult.final_obs``). Call ``start_episodes`` for streams whose episode
        ended before appending to them again. ``outputs``: those of the ``next_obs`` states
        (memories with outputs only).
        """
        streams = np.atleast_1d(np.asarray(streams, np.int64))
        outputs = self._checked_outputs(outputs, len(streams))
        if np.any(self.cursor[streams] < envs.STACK):
            raise RuntimeError("append() before start_episodes() on a stream")
        latest = (self.cursor[streams] - 1) % self.stream_capacity
        flags = np.full(streams.shape, VALID, np.uint8)
        flags |= np.where(terminated, TERMINATED, 0).astype(np.uint8)
        flags |= np.where(truncated, TRUNCATED, 0).astype(np.uint8)
        flags |= np.where(life_lost, LIFE_LOST, 0).astype(np.uint8)
        with self.lock:
            self.actions[streams, latest] = actions
            self.rewards[streams, latest] = rewards
            self._write(streams, next_obs[..., -1], outputs)
            # Set after the write: the write may have cleared the bit on a wrapped ring.
            self.flags[streams, latest] = flags

    # ---------------------------------------------------------------- sampling
    def __len__(self) -> int:
        """Transitions that can be sampled."""
        return int(np.count_nonzero(self.flags & VALID))

    @property
    def entries_written(self) -> int:
        return int(self.cursor.sum())

    def sample_indices(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform (stream, entry) pairs over valid transitions, by rejection."""
        filled = np.minimum(self.cursor, self.stream_capacity)
        if len(self) == 0:
            raise RuntimeError("cannot sample from a replay memory with no transitions")
        streams = np.empty(0, np.int64)
        entries = np.empty(0, np.int64)
        while len(streams) < batch_size:
            n = 2 * batch_size
            s = self.rng.integers(0, self.num_streams, n)
            e = (self.rng.random(n) * filled[s]).astype(np.int64)
            ok = (self.flags[s, e] & VALID).astype(bool)
            streams = np.concatenate([streams, s[ok]])
            entries = np.concatenate([entries, e[ok]])
        return streams[:batch_size], entries[:batch_size]

    def gather_window(self, streams, entries, gamma: float, life_loss_terminal: bool,
                      n_step: int = 1, reward_clip: float = 0.0) -> dict:
        """Transitions as one frame window per sample; see ``split_window``.

        One step (``n_step == 1``): ``frames`` [B, 5, 84, 84] holds s_tm1 (frames 0..3) and
        s_t (frames 1..4), ``r_t`` the reward and discount_t = gamma * (1 - terminal).

        n steps: ``frames`` [B, 8, 84, 84] holds s_tm1 (0..3) and the bootstrap state s_t
        (4..7), m <= n steps later; the walk stops early at an episode end or at the newest
        entry. With r the per-step rewards clipped to [-reward_clip, reward_clip]:

            r_t        = r_0 + gamma r_1 + ... + gamma^(m-1) r_(m-1)
            discount_t = gamma^m * (1 - terminal)

        terminal is game over, or a life loss when ``life_loss_terminal``; truncation is
        not terminal (it bootstraps from the final observation).
        """
        ended_mask = TERMINATED | TRUNCATED | (LIFE_LOST if life_loss_terminal else 0)
        terminal_mask = TERMINATED | (LIFE_LOST if life_loss_terminal else 0)
        returns = np.zeros(len(entries), np.float64)
        discount = np.ones(len(entries), np.float64)
        steps = np.zeros(len(entries), np.int64)
        open_ = np.ones(len(entries), bool)  # still walking forward
        terminal = np.zeros(len(entries), bool)
        for k in range(n_step):
            position = (entries + k) % self.stream_capacity
            flags = self.flags[streams, position]
            # Step 0 is valid by sampling; a later step counts if it starts a transition.
            take = open_ & ((flags & VALID) != 0) if k else open_
            reward = self.rewards[streams, position].astype(np.float64)
            if reward_clip > 0:
                reward = np.clip(reward, -reward_clip, reward_clip)
            returns += np.where(take, discount * reward, 0.0)
            discount = np.where(take, discount * gamma, discount)
            steps += take
            terminal |= take & ((flags & terminal_mask) != 0)
            open_ = take & ((flags & ended_mask) == 0)
        first = np.arange(-envs.STACK + 1, 1)
        if n_step == 1:
            window = entries[:, None] + np.arange(-envs.STACK + 1, 2)
        else:
            window = np.concatenate([entries[:, None] + first, (entries + steps)[:, None] + first], 1)
        return {
            "frames": self.frames[streams[:, None], window % self.stream_capacity],
            "a_tm1": self.actions[streams, entries].astype(np.int32),
            "r_t": returns.astype(np.float32),
            "discount_t": (discount * (1.0 - terminal)).astype(np.float32),
        }

    def sample_window(self, batch_size: int, gamma: float, life_loss_terminal: bool,
                      n_step: int = 1, reward_clip: float = 0.0) -> dict:
        """``sample_indices`` and ``gather_window`` under the memory's lock (safe beside a
        writer in another thread)."""
        with self.lock:
            streams, entries = self.sample_indices(batch_size)
            return self.gather_window(streams, entries, gamma, life_loss_terminal, n_step, reward_clip)

    def gather(self, streams, entries, gamma: float, life_loss_terminal: bool, n_step: int = 1,
               reward_clip: float = 0.0) -> dict:
        """Rebuilds transitions ``(s_tm1, a_tm1, r_t, discount_t, s_t)`` as numpy arrays."""
        return _split_numpy(self.gather_window(streams, entries, gamma, life_loss_terminal, n_step,
                                               reward_clip))

    def sample(self, batch_size: int, gamma: float = 0.99, life_loss_terminal=True, n_step: int = 1,
               reward_clip: float = 0.0) -> dict:
        """``sample_window`` as numpy transitions (see ``gather``)."""
        return _split_numpy(self.sample_window(batch_size, gamma, life_loss_terminal, n_step,
                                               reward_clip))

    def sample_states(self, batch_size: int, outputs: bool = False):
        """States only ``[B, 84, 84, 4]`` (what the AMN learner needs); with ``outputs``,
        ``(states, {name: [B, ...]})``: the stored outputs of those same states."""
        with self.lock:
            streams, entries = self.sample_indices(batch_size)
            window = (entries[:, None] + np.arange(-envs.STACK + 1, 1)) % self.stream_capacity
            frames = self.frames[streams[:, None], window]
            stored = {name: array[streams, entries] for name, array in self.outputs.items()} if outputs else None
        states = envs.channels_last(frames)
        return (states, stored) if outputs else states

    def latest_observations(self, streams) -> np.ndarray:
        """The state ``[n, 84, 84, 4]`` of each stream's newest entry (what its env shows now)."""
        streams = np.atleast_1d(np.asarray(streams, np.int64))
        if np.any(self.cursor[streams] < envs.STACK):
            raise RuntimeError("latest_observations() before start_episodes() on a stream")
        window = (self.cursor[streams][:, None] + np.arange(-envs.STACK, 0)) % self.stream_capacity
        with self.lock:
            frames = self.frames[streams[:, None], window]
        return envs.channels_last(frames)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.actions, self.rewards, self.flags,
                                      *self.outputs.values()))

    # ------------------------------------------------------------ save/restore
    def save(self, path: str) -> None:
        """Writes the contents as a plain .npz (no pickles), atomically."""
        tmp = path + ".tmp"
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                version=np.int64(_FORMAT_VERSION),
                frames=self.frames,
                actions=self.actions,
                rewards=self.rewards,
                flags=self.flags,
                cursor=self.cursor,
                **{f"output_{name}": array for name, array in self.outputs.items()},
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def restore(self, path: str) -> None:
        """Loads contents saved by ``save``; shapes and dtypes must match this memory.

        Each array is read straight into this memory's own (``_read_npz_into``), so a
        restore needs no second copy of the replay in memory (a 1M-transition replay is
        about 7 GB). Every array's header is checked before any is overwritten. A format-1
        file (written before outputs existed) restores into a memory without outputs; a
        memory with outputs refuses a file that lacks any of them."""
        try:
            with zipfile.ZipFile(path) as archive:
                headers = _npz_headers(archive)
                with archive.open("version.npy") as member:  # KeyError when absent
                    version = int(np.lib.format.read_array(member, allow_pickle=False))
                if version not in (1, _FORMAT_VERSION):
                    raise _FormatError(f"replay file {path} has format {version}, expected {_FORMAT_VERSION}")
                names = [*_ARRAYS, *(f"output_{n}" for n in self.outputs if f"output_{n}" in headers)]
                missing = [n for n in self.outputs if f"output_{n}" not in headers]
                if missing:
                    raise _FormatError(
                        f"replay file {path} (format {version}) lacks the outputs {missing} this memory "
                        "stores for every state (written by an older amn_tf or with another --beta); "
                        "resume without --save_replay and --deterministic: the memory refills")
                for name in names:
                    shape, dtype = headers[name]
                    mine = self._array(name)
                    if shape != mine.shape or dtype != mine.dtype:
                        raise _FormatError(
                            f"replay file {path}: {name} is {dtype}{list(shape)}, this memory "
                            f"needs {mine.dtype}{list(mine.shape)} (different capacity or streams?)")
                for name in names:
                    _read_npz_into(archive, name, self._array(name))
        except _FormatError as error:
            raise ValueError(str(error)) from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"replay file {path} is unreadable or incomplete ({error})") from None

    def _array(self, name: str) -> np.ndarray:
        """A saved array by its file name (``output_<name>`` for the outputs)."""
        return self.outputs[name[len("output_"):]] if name.startswith("output_") else getattr(self, name)


class _FormatError(Exception):
    """A readable replay file that does not fit the memory (its message is the whole line)."""


def _read_header(member):
    """(shape, dtype) from an .npy member positioned at its start; leaves it at the data."""
    major, minor = np.lib.format.read_magic(member)
    if (major, minor) == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    elif (major, minor) == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy format {major}.{minor}")
    if fortran or dtype.hasobject:
        raise ValueError("not a C-ordered plain array")
    return tuple(shape), dtype


def _npz_headers(archive: zipfile.ZipFile) -> dict:
    """name -> (shape, dtype) of every array in an .npz, reading headers only."""
    headers = {}
    for info in archive.infolist():
        if info.filename.endswith(".npy"):
            with archive.open(info) as member:
                headers[info.filename[: -len(".npy")]] = _read_header(member)
    return headers


_CHUNK = 16 << 20


def _read_npz_into(archive: zipfile.ZipFile, name: str, target: np.ndarray) -> None:
    """Reads array ``name`` of an .npz into ``target`` (same shape and dtype, C-contiguous)
    in 16 MiB pieces; a member shorter than its header says is an EOFError."""
    if not target.flags.c_contiguous:  # not this module's arrays; kept correct anyway
        with archive.open(name + ".npy") as member:
            target[...] = np.lib.format.read_array(member, allow_pickle=False)
        return
    view = memoryview(target.reshape(-1).view(np.uint8))
    with archive.open(name + ".npy") as member:
        _read_header(member)
        done = 0
        while done < len(view):
            read = member.readinto(view[done : done + _CHUNK])
            if not read:
                raise EOFError(f"{name} ends after {done} of {len(view)} bytes")
            done += read


# ------------------------------------------------------------------- tf.data
def _finish(dataset, prefetch: int):
    """``prefetch > 0``: sample ahead in a background thread. ``prefetch == 0``: sample only
    when the learner asks (tf.data's automatic prefetch injection is switched off too), so
    a seeded run draws the same batches from the same memory contents."""
    import tensorflow as tf

    if prefetch > 0:
        return dataset.prefetch(prefetch)
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_parallelization = False
    return dataset.with_options(options)


def _split_numpy(batch: dict) -> dict:
    """Numpy side of ``split_window``: the window's frames -> s_tm1, s_t [B, 84, 84, 4]."""
    frames = batch.pop("frames")  # [B, 5 or 8, 84, 84]
    split = 1 if frames.shape[1] == envs.STACK + 1 else envs.STACK
    batch["s_tm1"] = envs.channels_last(frames[:, : envs.STACK])
    batch["s_t"] = envs.channels_last(frames[:, split:])
    return batch


def split_window(batch):
    """TF side of ``gather_window``: [B, 5, 84, 84] (one step: overlapping stacks) or
    [B, 8, 84, 84] (n steps: two stacks) -> s_tm1, s_t [B, 84, 84, 4]."""
    import tensorflow as tf

    batch = dict(batch)
    stacks = tf.transpose(batch.pop("frames"), [0, 2, 3, 1])
    split = 1 if stacks.shape[-1] == envs.STACK + 1 else envs.STACK
    batch["s_tm1"] = stacks[..., : envs.STACK]
    batch["s_t"] = stacks[..., split:]
    return batch


def _block_size(block: int, prefetch: int) -> int:
    """Batches drawn per generator call: ``block`` when sampling runs ahead, else 1 (a
    reproducible run samples each batch only when the learner asks for it)."""
    return max(1, block) if prefetch > 0 else 1


def _blocked(batch: dict, block: int) -> dict:
    """[block * B, ...] arrays -> [block, B, ...] (one generator call, ``block`` batches)."""
    return {key: value.reshape(block, -1, *value.shape[1:]) for key, value in batch.items()}


def _window_frames(n_step: int) -> int:
    return envs.STACK + 1 if n_step == 1 else 2 * envs.STACK


def _transition_signature(total: int, block: int, n_step: int = 1) -> dict:
    import tensorflow as tf

    return {
        "frames": tf.TensorSpec([block, total, _window_frames(n_step), *envs.FRAME_SHAPE], tf.uint8),
        "a_tm1": tf.TensorSpec([block, total], tf.int32),
        "r_t": tf.TensorSpec([block, total], tf.float32),
        "discount_t": tf.TensorSpec([block, total], tf.float32),
    }


def transition_dataset(memory: ReplayMemory, batch_size, gamma, life_loss_terminal, prefetch=2,
                       block=8, n_step=1, reward_clip=0.0):
    """Endless tf.data stream of transition batches ``{s_tm1, a_tm1, r_t, discount_t, s_t}``
    (``n_step``-step returns of rewards clipped to ``reward_clip``; see ``gather_window``).

    Python only gathers one frame window per sample; splitting it into the two stacks
    runs in TensorFlow. With ``prefetch > 0`` sampling runs in a background thread, ahead
    of the learner, ``block`` batches per Python call (under the memory's lock, so the
    acting loop may append meanwhile); ``prefetch=0`` samples one batch synchronously, when
    asked (reproducible runs).
    """
    import tensorflow as tf

    block = _block_size(block, prefetch)

    def generate():
        while True:
            yield _blocked(memory.sample_window(batch_size * block, gamma, life_loss_terminal,
                                                n_step, reward_clip), block)

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=_transition_signature(batch_size, block, n_step))
    return _finish(dataset.unbatch().map(split_window), prefetch)


def _output_specs(memories) -> list:
    """``[(name, per-state shape, dtype)]`` of the ``q_values`` and ``features`` that every
    memory stores alike (features of shape (0,) where none are stored)."""
    stored = [set(m.outputs) for m in memories]
    if any(s != stored[0] for s in stored) or "q_values" not in stored[0]:
        raise ValueError(f"every memory must store q_values (and the same outputs) to sample "
                         f"them; they store {[sorted(s) for s in stored]}")
    specs = []
    for name in ("q_values", "features"):
        arrays = [m.outputs[name] for m in memories if name in m.outputs]
        shapes = {(a.shape[2:], a.dtype) for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"the memories store {name} of different shapes or dtypes: {shapes}")
        shape, dtype = shapes.pop() if shapes else ((0,), np.dtype(np.float16))
        specs.append((name, shape, dtype))
    return specs


def multitask_state_dataset(memories: list, batch_per_game: int, prefetch=2, replicas=1,
                            block=8, outputs: bool | None = None):
    """Endless stream of ``(states [G*b, 84, 84, 4], game_index [G*b])``: ``b`` states
    from each game's own memory, concatenated in game order. With ``replicas`` R > 1 the
    batch is R consecutive groups, each holding b/R states of every game in game order, so
    that a strategy splitting the batch gives every replica every game.

    ``outputs`` (default: whenever the memories store outputs): the batch also carries the
    stored outputs of its states, aligned with them, as ``(states, game_index, q_values
    [G*b, A], features [G*b, F])`` with the memories' ``q_values`` and ``features`` (F = 0
    when they store no ``features``), in the dtypes stored.

    With ``prefetch > 0`` the background thread samples ``block`` batches per Python call
    (one call into each memory for all of them), which cuts the per-batch cost of
    ``from_generator`` that the learner would otherwise wait on; ``prefetch=0`` samples one
    batch at a time, when asked (reproducible runs)."""
    import tensorflow as tf

    if batch_per_game % replicas:
        raise ValueError(f"batch_per_game={batch_per_game} does not split over {replicas} replicas")
    stored = [set(m.outputs) for m in memories]
    if outputs is None:
        outputs = bool(stored[0])
    specs = _output_specs(memories) if outputs else []
    block = _block_size(block, prefetch)
    share = batch_per_game // replicas
    group = np.repeat(np.arange(len(memories), dtype=np.int32), share)
    game_index = np.tile(np.tile(group, replicas), (block, 1))

    def by_replica(per_game):
        """[G] x [block, b, ...] -> [block, G*b, ...] grouped by replica, then by game."""
        return np.concatenate([p[:, r * share : (r + 1) * share] for r in range(replicas)
                               for p in per_game], axis=1)

    def generate():
        while True:
            per_game = [m.sample_states(batch_per_game * block, outputs=outputs) for m in memories]
            if not outputs:
                yield by_replica([p.reshape(block, batch_per_game, *envs.OBSERVATION_SHAPE)
                                  for p in per_game]), game_index
                continue
            parts = [by_replica([p[0].reshape(block, batch_per_game, *envs.OBSERVATION_SHAPE)
                                 for p in per_game]), game_index]
            for name, shape, dtype in specs:
                parts.append(by_replica([
                    p[1][name].reshape(block, batch_per_game, *shape) if name in p[1]
                    else np.zeros((block, batch_per_game, *shape), dtype) for p in per_game]))
            yield tuple(parts)

    total = len(memories) * batch_per_game
    signature = [tf.TensorSpec([block, total, *envs.OBSERVATION_SHAPE], tf.uint8),
                 tf.TensorSpec([block, total], tf.int32)]
    if outputs:
        signature += [tf.TensorSpec([block, total, *shape], tf.as_dtype(dtype))
                      for _, shape, dtype in specs]
    dataset = tf.data.Dataset.from_generator(generate, output_signature=tuple(signature))
    return _finish(dataset.unbatch(), prefetch)


def multitask_transition_dataset(memories: list, batch_per_game: int, gamma, life_loss_terminal,
                                 prefetch=2, block=8, n_step=1, reward_clip=0.0):
    """Endless stream of transition batches with ``batch_per_game`` transitions from each
    game's own memory, concatenated in game order (keys and ``block`` as
    ``transition_dataset``)."""
    import tensorflow as tf

    block = _block_size(block, prefetch)

    def generate():
        while True:
            parts = [_blocked(m.sample_window(batch_per_game * block, gamma, life_loss_terminal,
                                              n_step, reward_clip), block) for m in memories]
            yield {key: np.concatenate([p[key] for p in parts], axis=1) for key in parts[0]}

    total = len(memories) * batch_per_game
    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=_transition_signature(total, block, n_step))
    return _finish(dataset.unbatch().map(split_window), prefetch)
