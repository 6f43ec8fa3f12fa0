"""ReplayMemory: frame stacking, episode boundaries, wrap-around, save/restore, tf.data.

Fake frames carry their identity: pixel [0, 0] is the stream + 1, [0, 1] the episode
number, [0, 2] the step within the episode + 3 (so the three frames before the first real
frame, the reset observation's padding, are steps -3, -2, -1), and every other pixel a
value derived from all three. A rebuilt stack can then be decoded and checked frame by
frame against what an environment would have shown.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from amn_tf import envs, replay

GAMMA = 0.9


def make_frame(stream: int, episode: int, step: int) -> np.ndarray:
    frame = np.full(envs.FRAME_SHAPE, (37 * stream + 11 * episode + step + 3) % 251 + 1, np.uint8)
    frame[0, 0] = stream + 1
    frame[0, 1] = episode
    frame[0, 2] = step + 3
    return frame


def decode(frame: np.ndarray) -> tuple[int, int, int]:
    stream, episode, step = int(frame[0, 0]) - 1, int(frame[0, 1]), int(frame[0, 2]) - 3
    np.testing.assert_array_equal(frame, make_frame(stream, episode, step))  # whole frame copied
    return stream, episode, step


def observation(stream: int, episode: int, step: int) -> np.ndarray:
    """Stack [84, 84, 4] of steps step-3 .. step (steps < 0 are labelled padding frames)."""
    return np.stack([make_frame(stream, episode, t) for t in range(step - 3, step + 1)], axis=-1)


def action_of(stream, episode, step):
    return (3 * stream + 5 * episode + step) % envs.NUM_ACTIONS


def reward_of(stream, episode, step):
    return float(step) + 0.25 * stream - 0.5 * episode


class Writer:
    """Plays fake episodes into a memory the way ``multigame.GamePlay`` does: one ``append`` for all
    streams per step, then ``start_episodes`` for the streams whose episode ended."""

    def __init__(self, memory: replay.ReplayMemory, seed=0, max_length=7, ends=("terminated",),
                 annotate=None):
        self.memory = memory
        self.annotate = annotate  # states -> outputs, for memories that store outputs
        self.rng = np.random.default_rng(seed)
        self.n = memory.num_streams
        self.streams = np.arange(self.n)
        self.episode = np.zeros(self.n, int)
        self.step = np.zeros(self.n, int)
        self.max_length = max_length
        self.ends = ends
        self.length = self.rng.integers(1, max_length + 1, self.n)
        self.end_kind = [self.rng.choice(ends) for _ in range(self.n)]
        first = np.stack([observation(s, 0, 0) for s in self.streams])
        memory.start_episodes(self.streams, first, self.outputs(first))

    def outputs(self, states):
        return None if self.annotate is None else self.annotate(states)

    def advance(self):
        actions = np.array([action_of(s, self.episode[s], self.step[s]) for s in self.streams])
        rewards = np.array([reward_of(s, self.episode[s], self.step[s]) for s in self.streams])
        ended = self.step + 1 >= self.length
        terminated = ended & np.array([k == "terminated" for k in self.end_kind])
        truncated = ended & ~terminated
        life_lost = np.zeros(self.n, bool)
        next_obs = np.stack([observation(s, self.episode[s], self.step[s] + 1) for s in self.streams])
        self.memory.append(self.streams, actions, rewards, terminated, truncated, life_lost, next_obs,
                           self.outputs(next_obs))
        self.step += 1
        for s in np.flatnonzero(ended):
            self.episode[s] = (self.episode[s] + 1) % 256
            self.step[s] = 0
            self.length[s] = self.rng.integers(1, self.max_length + 1)
            self.end_kind[s] = self.rng.choice(self.ends)
        if ended.any():
            starts = np.flatnonzero(ended)
            first = np.stack([observation(s, self.episode[s], 0) for s in starts])
            self.memory.start_episodes(starts, first, self.outputs(first))



def check_transition(batch: dict, i: int) -> tuple[int, int, int]:
    """Asserts transition ``i`` of a gathered batch is one real step of one episode."""
    frames_tm1 = [decode(batch["s_tm1"][i, ..., k]) for k in range(4)]
    frames_t = [decode(batch["s_t"][i, ..., k]) for k in range(4)]
    stream, episode, step = frames_tm1[-1]
    assert step >= 0, "a transition starts on a padding frame"
    # s_tm1: steps step-3 .. step of one episode (padding frames included, labelled < 0).
    assert frames_tm1 == [(stream, episode, step - 3 + k) for k in range(4)]
    # s_t is s_tm1 shifted by one, with the next frame of the same episode appended.
    assert frames_t == [(stream, episode, step - 2 + k) for k in range(4)]
    assert batch["a_tm1"][i] == action_of(stream, episode, step)
    assert batch["r_t"][i] == pytest.approx(reward_of(stream, episode, step))
    return stream, episode, step


def valid_entries(memory):
    streams, entries = np.nonzero(memory.flags & replay.VALID)
    return streams, entries


# ------------------------------------------------------------------ stacking
def test_first_transitions_hold_the_zero_padded_reset_observation_exactly():
    memory = replay.ReplayMemory(capacity=64, num_streams=2)
    rng = np.random.default_rng(0)
    first = rng.integers(1, 256, (2, 84, 84, 4), dtype=np.uint8)
    first[..., :3] = 0  # what both env back ends return at reset
    memory.start_episodes([0, 1], first)
    assert len(memory) == 0  # the four reset entries start no transition yet
    second = rng.integers(1, 256, (2, 84, 84, 4), dtype=np.uint8)
    second[..., :2] = 0
    second[..., 2] = first[..., 3]
    memory.append([0, 1], [1, 2], [0.5, -1.0], [False] * 2, [False] * 2, [False] * 2, second)
    assert len(memory) == 2
    # Stream s wrote entries 0..3 (the reset stack) and 4 (the new frame): the transition is at 3.
    batch = memory.gather(np.array([0, 1]), np.array([3, 3]), GAMMA, True)
    np.testing.assert_array_equal(batch["s_tm1"], first)
    np.testing.assert_array_equal(batch["s_t"], second)
    np.testing.assert_array_equal(batch["a_tm1"], [1, 2])
    np.testing.assert_array_equal(batch["r_t"], np.float32([0.5, -1.0]))
    np.testing.assert_array_equal(batch["discount_t"], np.float32([GAMMA, GAMMA]))


def test_append_before_start_episodes_is_refused():
    memory = replay.ReplayMemory(capacity=32, num_streams=1)
    with pytest.raises(RuntimeError, match="start_episodes"):
        memory.append([0], [0], [0.0], [False], [False], [False], np.zeros((1, 84, 84, 4), np.uint8))


def test_too_small_capacity_is_refused():
    with pytest.raises(ValueError, match="too small"):
        replay.ReplayMemory(capacity=20, num_streams=4)


def test_stacks_never_mix_episodes_across_streams():
    memory = replay.ReplayMemory(capacity=3 * 200, num_streams=3, seed=4)
    writer = Writer(memory, seed=1, max_length=6, ends=("terminated", "truncated"))
    for _ in range(60):  # about 20 short episodes per stream, no wrap-around
        writer.advance()
    # Every valid entry, in order, is exactly one transition per step written.
    streams, entries = valid_entries(memory)
    assert len(memory) == len(streams) == 60 * 3
    batch = memory.gather(streams, entries, GAMMA, True)
    seen = {check_transition(batch, i) for i in range(len(streams))}
    assert len(seen) == len(streams)
    episodes_per_stream = [len({e for s, e, _ in seen if s == k}) for k in range(3)]
    assert min(episodes_per_stream) >= 8
    # Uniform samples are all consistent too, and cover most of the memory.
    sampled = memory.sample(512, gamma=GAMMA)
    keys = {check_transition(sampled, i) for i in range(512)}
    assert len(keys) > 120


# ------------------------------------------------------------- wrap-around
def expected_valid(written: list[list], capacity: int) -> int:
    """Transitions whose five-frame window is still in a ring of ``capacity`` entries.

    ``written[s]`` lists, per entry ever written to stream s, whether it starts a
    transition (a real step's frame followed by the next frame of the same episode)."""
    total = 0
    for entries in written:
        cursor = len(entries)
        for index, starts in enumerate(entries):
            if starts and index - 3 >= cursor - capacity and index + 1 < cursor:
                total += 1
    return total


def test_wrap_around_keeps_only_whole_transitions():
    memory = replay.ReplayMemory(capacity=3 * 12, num_streams=3, seed=7)
    assert memory.stream_capacity == 12
    writer = Writer(memory, seed=3, max_length=5, ends=("terminated", "truncated"))
    # Shadow log of entries per stream: does the entry start a transition once complete?
    # Reset stacks: of their four frames, only the last starts a transition.
    written = [[False] * 3 + [True] for _ in range(3)]
    for _ in range(100):
        ended_before = writer.step + 1 >= writer.length
        writer.advance()
        for s in range(3):
            if ended_before[s]:
                written[s].append(False)  # the final observation's frame starts nothing
                written[s].extend([False] * 3 + [True])  # the next episode's reset stack
            else:
                written[s].append(True)
        assert len(memory) == expected_valid(written, 12)
        streams, entries = valid_entries(memory)
        batch = memory.gather(streams, entries, GAMMA, True)
        for i in range(len(streams)):
            check_transition(batch, i)
    assert memory.entries_written == sum(len(w) for w in written) > 3 * 12 * 5
    sampled = memory.sample(256, gamma=GAMMA)
    for i in range(256):
        check_transition(sampled, i)


def test_wrap_around_inside_one_long_episode():
    memory = replay.ReplayMemory(capacity=10, num_streams=1, seed=0)
    memory.start_episodes([0], observation(0, 0, 0)[None])
    for step in range(57):
        memory.append([0], [action_of(0, 0, step)], [reward_of(0, 0, step)], [False], [False],
                      [False], observation(0, 0, step + 1)[None])
        # Ring of 10 entries, the newest has no successor yet, and a window spans 5
        # entries: at most 10 - 4 = 6 transitions are whole.
        assert len(memory) == min(step + 1, 6)
    streams, entries = valid_entries(memory)
    batch = memory.gather(streams, entries, GAMMA, True)
    steps = sorted(check_transition(batch, i)[2] for i in range(len(streams)))
    assert steps == list(range(51, 57))  # exactly the newest six steps


# ------------------------------------------------------------ episode ends
def play_one_episode(life_lost_steps=(), end="terminated", length=6):
    """Stream 0: one episode of ``length`` steps, ending by ``end``, then a new one."""
    memory = replay.ReplayMemory(capacity=64, num_streams=1)
    memory.start_episodes([0], observation(0, 0, 0)[None])
    for step in range(length):
        last = step == length - 1
        memory.append([0], [action_of(0, 0, step)], [reward_of(0, 0, step)],
                      [last and end == "terminated"], [last and end == "truncated"],
                      [step in life_lost_steps], observation(0, 0, step + 1)[None])
    memory.start_episodes([0], observation(0, 1, 0)[None])
    memory.append([0], [action_of(0, 1, 0)], [reward_of(0, 1, 0)], [False], [False], [False],
                  observation(0, 1, 1)[None])
    return memory


def transitions_by_step(memory, life_loss_terminal):
    streams, entries = valid_entries(memory)
    batch = memory.gather(streams, entries, GAMMA, life_loss_terminal)
    result = {}
    for i in range(len(streams)):
        _, episode, step = check_transition(batch, i)
        result[(episode, step)] = {k: v[i] for k, v in batch.items()}
    return result


def test_terminated_has_zero_discount():
    by_step = transitions_by_step(play_one_episode(end="terminated"), life_loss_terminal=True)
    assert sorted(by_step) == [(0, k) for k in range(6)] + [(1, 0)]
    assert by_step[(0, 5)]["discount_t"] == 0.0
    for step in range(5):
        assert by_step[(0, step)]["discount_t"] == np.float32(GAMMA)
    assert by_step[(1, 0)]["discount_t"] == np.float32(GAMMA)
    # The terminal transition's s_t ends on the final observation's frame, not the reset.
    assert decode(by_step[(0, 5)]["s_t"][..., -1]) == (0, 0, 6)


def test_truncated_bootstraps_from_the_final_observation():
    by_step = transitions_by_step(play_one_episode(end="truncated"), life_loss_terminal=True)
    last = by_step[(0, 5)]
    assert last["discount_t"] == np.float32(GAMMA)
    np.testing.assert_array_equal(last["s_t"], observation(0, 0, 6))
    # The next episode's first transition starts from its own reset observation.
    np.testing.assert_array_equal(by_step[(1, 0)]["s_tm1"], observation(0, 1, 0))


@pytest.mark.parametrize("life_loss_terminal", [True, False])
def test_life_loss_is_terminal_only_when_asked(life_loss_terminal):
    memory = play_one_episode(life_lost_steps=(2,), end="terminated")
    by_step = transitions_by_step(memory, life_loss_terminal)
    expected = 0.0 if life_loss_terminal else np.float32(GAMMA)
    assert by_step[(0, 2)]["discount_t"] == expected
    assert by_step[(0, 1)]["discount_t"] == np.float32(GAMMA)
    assert by_step[(0, 3)]["discount_t"] == np.float32(GAMMA)
    assert by_step[(0, 5)]["discount_t"] == 0.0  # game over is terminal either way


# ------------------------------------------------------------- n-step returns
class RecordingWriter(Writer):
    """A Writer that remembers each episode's length and how it ended."""

    def __init__(self, memory, **kwargs):
        self.episodes = {}
        super().__init__(memory, **kwargs)
        self._record()

    def _record(self):
        for s in self.streams:
            self.episodes[(s, self.episode[s])] = (int(self.length[s]), self.end_kind[s])

    def advance(self):
        super().advance()
        self._record()


@pytest.mark.parametrize("n_step", [1, 2, 3, 5])
def test_n_step_returns_stop_at_episode_ends_and_at_the_newest_entry(n_step):
    memory = replay.ReplayMemory(capacity=3 * 30, num_streams=3, seed=1)
    writer = RecordingWriter(memory, seed=4, max_length=6, ends=("terminated", "truncated"))
    for _ in range(47):  # wraps each ring of 30 entries
        writer.advance()
    streams, entries = valid_entries(memory)
    batch = memory.gather(streams, entries, GAMMA, True, n_step=n_step, reward_clip=4.0)
    assert len(streams) > 25
    for i in range(len(streams)):
        frames_tm1 = [decode(batch["s_tm1"][i, ..., k]) for k in range(4)]
        stream, episode, step = frames_tm1[-1]
        assert frames_tm1 == [(stream, episode, step - 3 + k) for k in range(4)]
        length, end = writer.episodes[(stream, episode)]
        # Steps written so far: the whole episode, or up to the running episode's newest frame.
        written = writer.step[stream] if episode == writer.episode[stream] else length
        m = min(n_step, length - step, written - step)
        assert m >= 1
        # s_t: the observation m steps later, of the same episode.
        assert [decode(batch["s_t"][i, ..., k]) for k in range(4)] == [
            (stream, episode, step + m - 3 + k) for k in range(4)]
        # r_t = sum_k gamma^k clip(r_(step+k), -4, 4), k < m
        expected = sum(GAMMA**k * np.clip(reward_of(stream, episode, step + k), -4, 4) for k in range(m))
        assert batch["r_t"][i] == pytest.approx(expected, rel=1e-5)
        # discount = gamma^m, or 0 when the m-th step ended the game
        terminal = end == "terminated" and step + m == length
        assert batch["discount_t"][i] == pytest.approx(0.0 if terminal else GAMMA**m, rel=1e-6)
        assert batch["a_tm1"][i] == action_of(stream, episode, step)


def test_n_step_return_by_hand():
    # One episode of 6 steps, rewards 0, 1, 2, 3, 4, 5 (reward_of(0, 0, k) = k), terminated.
    memory = play_one_episode(end="terminated", length=6)
    streams, entries = valid_entries(memory)
    batch = memory.gather(streams, entries, 0.5, True, n_step=3, reward_clip=0.0)
    by_step = {decode(batch["s_tm1"][i, ..., -1])[1:]: i for i in range(len(streams))}
    i = by_step[(0, 1)]  # 1 + 0.5 * 2 + 0.25 * 3 = 2.75, bootstrap from step 4 with 0.125
    assert batch["r_t"][i] == pytest.approx(2.75) and batch["discount_t"][i] == pytest.approx(0.125)
    i = by_step[(0, 4)]  # 4 + 0.5 * 5 = 6.5, then the game ends: no bootstrap
    assert batch["r_t"][i] == pytest.approx(6.5) and batch["discount_t"][i] == 0.0
    assert decode(batch["s_t"][i, ..., -1]) == (0, 0, 6)  # the final observation
    i = by_step[(1, 0)]  # the new episode has one step written: a 1-step return for now
    assert batch["r_t"][i] == pytest.approx(reward_of(0, 1, 0)) and batch["discount_t"][i] == pytest.approx(0.5)
    # Clipping applies to each step's reward before summing: 0.5 * (1 + 0.5 + 0.25)
    batch = memory.gather(streams, entries, 0.5, True, n_step=3, reward_clip=1.0)
    assert batch["r_t"][by_step[(0, 1)]] == pytest.approx(1.75)


@pytest.mark.parametrize("n_step", [1, 3])
def test_sampling_beside_a_writing_thread_never_mixes_frames(n_step):
    """The tf.data thread samples while the acting loop appends: every sampled window must
    hold exactly the frames of its transition (stress: small rings, constant wrap-around)."""
    import threading

    memory = replay.ReplayMemory(capacity=2 * 16, num_streams=2, seed=3)
    writer = RecordingWriter(memory, seed=2, max_length=9, ends=("terminated", "truncated"))
    for _ in range(20):
        writer.advance()
    stop = threading.Event()
    writes = [0]

    def write():
        while not stop.is_set():
            writer.advance()
            writes[0] += 1

    thread = threading.Thread(target=write)
    thread.start()
    checked = 0
    try:
        # Counted, not timed: enough windows checked while the writer wrapped the rings many
        # times over (a slow machine takes longer, it does not check less).
        deadline = time.time() + 120.0
        while (checked < 1280 or writes[0] < 400) and time.time() < deadline:
            batch = memory.sample(64, gamma=GAMMA, n_step=n_step)
            for i in range(64):
                tm1 = [decode(batch["s_tm1"][i, ..., k]) for k in range(4)]
                stream, episode, step = tm1[-1]
                assert tm1 == [(stream, episode, step - 3 + k) for k in range(4)]
                t = [decode(batch["s_t"][i, ..., k]) for k in range(4)]
                m = t[-1][2] - step
                assert 1 <= m <= n_step
                assert t == [(stream, episode, step + m - 3 + k) for k in range(4)]
                assert batch["a_tm1"][i] == action_of(stream, episode, step)
                checked += 1
    finally:
        stop.set()
        thread.join()
    assert checked >= 1280 and writes[0] >= 400, (checked, writes[0])


# ----------------------------------------------------------- save/restore
def filled_memory(capacity=3 * 40, streams=3, seed=5, steps=70):
    memory = replay.ReplayMemory(capacity=capacity, num_streams=streams, seed=seed)
    writer = Writer(memory, seed=seed, max_length=9, ends=("terminated", "truncated"))
    for _ in range(steps):
        writer.advance()
    return memory


def test_save_restore_round_trip_gives_identical_samples(tmp_path):
    original = filled_memory()
    path = str(tmp_path / "replay.npz")
    original.save(path)
    assert not (tmp_path / "replay.npz.tmp").exists()
    restored = replay.ReplayMemory(capacity=3 * 40, num_streams=3, seed=123)
    restored.restore(path)
    assert len(restored) == len(original) and restored.entries_written == original.entries_written
    restored.rng.bit_generator.state = original.rng.bit_generator.state
    a = original.sample(64, gamma=GAMMA)
    b = restored.sample(64, gamma=GAMMA)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # Writing on after a restore continues the same rings.
    Writer(restored, seed=9).advance()
    assert restored.entries_written > original.entries_written


@pytest.mark.slow  # a 20k-transition replay saved and restored under tracemalloc
def test_restore_reads_into_the_memory_without_a_second_copy(tmp_path):
    """A 1M-transition replay is ~7 GB: restoring it must not hold a second copy in memory."""
    import tracemalloc

    source = replay.ReplayMemory(capacity=20_000, num_streams=2, seed=1)
    source.frames[...] = np.random.default_rng(0).integers(0, 256, source.frames.shape, np.uint8)
    source.cursor[...] = [12_345, 6_789]
    path = str(tmp_path / "replay.npz")
    source.save(path)
    target = replay.ReplayMemory(capacity=20_000, num_streams=2, seed=2)
    tracemalloc.start()
    try:
        target.restore(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(target.frames, source.frames)
    np.testing.assert_array_equal(target.cursor, source.cursor)
    assert source.frames.nbytes > 100e6 and peak < source.frames.nbytes / 4, (peak, source.frames.nbytes)


@pytest.mark.parametrize("capacity,streams", [(3 * 41, 3), (4 * 40, 4)])
def test_restore_into_another_shape_is_refused(tmp_path, capacity, streams):
    path = str(tmp_path / "replay.npz")
    filled_memory().save(path)
    other = replay.ReplayMemory(capacity=capacity, num_streams=streams)
    before = other.frames.copy()
    with pytest.raises(ValueError, match="different capacity or streams"):
        other.restore(path)
    np.testing.assert_array_equal(other.frames, before)  # nothing half-restored
    assert other.entries_written == 0


def test_restore_garbage_file_raises_value_error(tmp_path):
    path = tmp_path / "replay.npz"
    path.write_bytes(b"not a replay file at all" * 100)
    with pytest.raises(ValueError, match="unreadable or incomplete"):
        replay.ReplayMemory(capacity=3 * 40, num_streams=3).restore(str(path))
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="unreadable or incomplete"):
        replay.ReplayMemory(capacity=3 * 40, num_streams=3).restore(str(path))


def test_restore_missing_file_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="unreadable or incomplete"):
        replay.ReplayMemory(capacity=3 * 40, num_streams=3).restore(str(tmp_path / "nope.npz"))


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_restore_truncated_or_corrupted_file_raises_value_error(tmp_path, damage):
    path = tmp_path / "replay.npz"
    filled_memory().save(str(path))
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # same length, zeroed bytes inside the frames array (CRC mismatch)
        data = data[:1000] + bytes(4000) + data[5000:]
    path.write_bytes(data)
    with pytest.raises(ValueError, match="unreadable or incomplete"):
        replay.ReplayMemory(capacity=3 * 40, num_streams=3).restore(str(path))


# ---------------------------------------------------------------- memory use
@pytest.mark.parametrize("capacity,streams", [(1000, 1), (4000, 4), (100_000, 4)])
def test_bytes_per_transition(capacity, streams):
    memory = replay.ReplayMemory(capacity, streams)
    assert memory.capacity == capacity
    # 84*84 frame + 1 action + 4 reward + 1 flags = 7,062 bytes, each frame stored once.
    assert memory.nbytes() / memory.capacity <= 7200


def test_sampling_an_empty_memory_is_an_error():
    memory = replay.ReplayMemory(capacity=32, num_streams=1)
    memory.start_episodes([0], observation(0, 0, 0)[None])
    with pytest.raises(RuntimeError, match="no transitions"):
        memory.sample_indices(4)


# ------------------------------------------------------------------ tf.data
def test_transition_dataset_matches_gather():
    # Two memories with identical contents and seeds: the dataset samples from one, the
    # reference from the other, so a background sampler cannot disturb the reference.
    source = filled_memory(seed=11)
    reference = filled_memory(seed=11)
    dataset = replay.transition_dataset(source, 16, GAMMA, life_loss_terminal=False, prefetch=0)
    assert dataset.element_spec["s_tm1"].shape.as_list() == [16, 84, 84, 4]
    iterator = iter(dataset)
    for _ in range(3):
        batch = {k: v.numpy() for k, v in next(iterator).items()}
        assert set(batch) == {"s_tm1", "a_tm1", "r_t", "discount_t", "s_t"}
        assert batch["s_tm1"].dtype == np.uint8 and batch["s_tm1"].shape == (16, 84, 84, 4)
        assert batch["s_t"].dtype == np.uint8 and batch["s_t"].shape == (16, 84, 84, 4)
        assert batch["a_tm1"].dtype == np.int32 and batch["a_tm1"].shape == (16,)
        assert batch["r_t"].dtype == np.float32 and batch["discount_t"].dtype == np.float32
        streams, entries = reference.sample_indices(16)
        expected = reference.gather(streams, entries, GAMMA, False)
        for key in expected:
            np.testing.assert_array_equal(batch[key], expected[key], err_msg=key)
        for i in range(16):
            check_transition(batch, i)


def wait_for_calls(counter, above, seconds=1.5):
    deadline = time.time() + seconds
    while time.time() < deadline and counter[0] <= above:
        time.sleep(0.05)
    return counter[0]


def test_prefetch_zero_samples_only_when_asked():
    memory = filled_memory()
    calls = [0]
    sample_indices = memory.sample_indices

    def counted(batch_size):
        calls[0] += 1
        return sample_indices(batch_size)

    memory.sample_indices = counted
    iterator = iter(replay.transition_dataset(memory, 4, GAMMA, True, prefetch=0))
    next(iterator)
    next(iterator)
    assert wait_for_calls(calls, above=2) == 2


def test_multitask_state_dataset_orders_games():
    games = [filled_memory(capacity=2 * 30, streams=2, seed=s) for s in (21, 22, 23)]
    twins = [filled_memory(capacity=2 * 30, streams=2, seed=s) for s in (21, 22, 23)]
    # Mark each game's frames so a state can be traced to its memory.
    for index, memory in enumerate(games + twins):
        memory.frames[..., 83, 83] = 200 + index % 3
    dataset = replay.multitask_state_dataset(games, batch_per_game=5, prefetch=0)
    states, game_index = next(iter(dataset))
    states, game_index = states.numpy(), game_index.numpy()
    assert states.shape == (15, 84, 84, 4) and states.dtype == np.uint8
    assert game_index.dtype == np.int32
    np.testing.assert_array_equal(game_index, np.repeat(np.arange(3), 5))
    np.testing.assert_array_equal(states[..., 83, 83, :], np.repeat(200 + game_index, 4).reshape(15, 4))
    expected = np.concatenate([twin.sample_states(5) for twin in twins])
    np.testing.assert_array_equal(states, expected)
    for i in range(15):  # each state: four consecutive frames of one episode (labels 0,0..0,2)
        stream, episode, last = (int(v) for v in states[i, 0, :3, 3])
        assert last >= 3  # the newest frame is a real step, not padding
        for k in range(4):
            assert tuple(states[i, 0, :3, k]) == (stream, episode, last - 3 + k)


# ------------------------------------------------------ per-state outputs (AMN)
OUTPUTS = {"q_values": ((12,), np.float32), "features": ((8,), np.float16)}


def fake_outputs(states: np.ndarray) -> dict:
    """Stands in for an expert: outputs that depend on every frame of each state (the
    identity labels of its four frames, and a few pixels of each)."""
    n = len(states)
    return {"q_values": states[:, 0, :3, :].reshape(n, 12).astype(np.float32) + 0.5,
            "features": states[:, 5, :2, :].reshape(n, 8).astype(np.float16) / 7}


def test_outputs_follow_their_states_through_wrap_around():
    """Every sampled state comes with the outputs computed on that state when it was written,
    also once each small ring has wrapped around many times."""
    memory = replay.ReplayMemory(capacity=3 * 14, num_streams=3, seed=2, outputs=OUTPUTS)
    writer = Writer(memory, seed=6, max_length=6, ends=("terminated", "truncated"), annotate=fake_outputs)
    for _ in range(90):
        writer.advance()
    assert memory.entries_written > 5 * memory.capacity  # wrapped
    states, outputs = memory.sample_states(256, outputs=True)
    assert set(outputs) == {"q_values", "features"}
    expected = fake_outputs(states)
    for name, (shape, dtype) in OUTPUTS.items():
        assert outputs[name].dtype == dtype and outputs[name].shape == (256, *shape)
        np.testing.assert_array_equal(outputs[name], expected[name], err_msg=name)
    for i in range(256):  # and the states are whole states of one episode
        tm1 = [decode(states[i, ..., k]) for k in range(4)]
        stream, episode, step = tm1[-1]
        assert step >= 0 and tm1 == [(stream, episode, step - 3 + k) for k in range(4)]
    # Without outputs=True sample_states gives the states alone.
    assert memory.sample_states(4).shape == (4, 84, 84, 4)


def test_outputs_are_required_exactly_where_stored():
    first = observation(0, 0, 0)[None]
    with_outputs = replay.ReplayMemory(capacity=32, num_streams=1, outputs=OUTPUTS)
    with pytest.raises(ValueError, match="stores outputs"):
        with_outputs.start_episodes([0], first)
    with pytest.raises(ValueError, match="expected \\[1, 8\\]"):
        with_outputs.start_episodes([0], first, {**fake_outputs(first), "features": np.zeros((1, 9))})
    assert with_outputs.entries_written == 0  # nothing written by a refused call
    plain = replay.ReplayMemory(capacity=32, num_streams=1)
    with pytest.raises(ValueError, match="stores no outputs"):
        plain.start_episodes([0], first, fake_outputs(first))


def test_multitask_state_dataset_carries_stored_outputs_aligned():
    games = [replay.ReplayMemory(capacity=2 * 20, num_streams=2, seed=s, outputs=OUTPUTS) for s in (31, 32)]
    for seed, memory in enumerate(games):
        writer = Writer(memory, seed=seed, max_length=6, annotate=fake_outputs)
        for _ in range(50):
            writer.advance()
    for replicas in (1, 2):
        dataset = replay.multitask_state_dataset(games, batch_per_game=4, prefetch=0, replicas=replicas)
        states, game_index, q_values, features = (t.numpy() for t in next(iter(dataset)))
        assert states.shape == (8, 84, 84, 4) and q_values.shape == (8, 12) and features.shape == (8, 8)
        assert q_values.dtype == np.float32 and features.dtype == np.float16
        expected = fake_outputs(states)
        np.testing.assert_array_equal(q_values, expected["q_values"])
        np.testing.assert_array_equal(features, expected["features"])
        group = np.repeat(np.arange(2), 4 // replicas)
        np.testing.assert_array_equal(game_index, np.tile(group, replicas))
    # outputs=False: bare states from the same memories; background sampling works too.
    states, game_index = next(iter(replay.multitask_state_dataset(games, 4, prefetch=0, outputs=False)))
    assert states.shape == (8, 84, 84, 4)
    batch = next(iter(replay.multitask_state_dataset(games, 4, prefetch=2)))
    np.testing.assert_array_equal(batch[2].numpy(), fake_outputs(batch[0].numpy())["q_values"])


def test_save_restore_round_trip_with_outputs(tmp_path):
    original = replay.ReplayMemory(capacity=3 * 20, num_streams=3, seed=4, outputs=OUTPUTS)
    writer = Writer(original, seed=4, max_length=6, annotate=fake_outputs)
    for _ in range(40):
        writer.advance()
    path = str(tmp_path / "replay.npz")
    original.save(path)
    with np.load(path) as saved:
        assert int(saved["version"]) == 2 and saved["output_features"].dtype == np.float16
    restored = replay.ReplayMemory(capacity=3 * 20, num_streams=3, seed=99, outputs=OUTPUTS)
    restored.restore(path)
    for name in OUTPUTS:
        np.testing.assert_array_equal(restored.outputs[name], original.outputs[name])
    restored.rng.bit_generator.state = original.rng.bit_generator.state
    a_states, a_outputs = original.sample_states(32, outputs=True)
    b_states, b_outputs = restored.sample_states(32, outputs=True)
    np.testing.assert_array_equal(a_states, b_states)
    for name in OUTPUTS:
        np.testing.assert_array_equal(a_outputs[name], b_outputs[name])
    # A memory storing other outputs (another --beta) refuses the file in one line.
    no_features = replay.ReplayMemory(capacity=3 * 20, num_streams=3,
                                      outputs={"q_values": OUTPUTS["q_values"], "other": ((2,), np.float16)})
    with pytest.raises(ValueError, match=r"lacks the outputs \['other'\]") as error:
        no_features.restore(path)
    assert "\n" not in str(error.value)


def test_format_1_file_restores_without_outputs_and_is_refused_with_them(tmp_path):
    """A replay file of the previous format (no outputs): a DQN memory restores it as before;
    an AMN memory, which keeps outputs for every state, refuses it in one line."""
    original = filled_memory()
    path = str(tmp_path / "replay-v1.npz")
    with open(path, "wb") as handle:  # what format 1 wrote
        np.savez(handle, version=np.int64(1), frames=original.frames, actions=original.actions,
                 rewards=original.rewards, flags=original.flags, cursor=original.cursor)
    plain = replay.ReplayMemory(capacity=3 * 40, num_streams=3)
    plain.restore(path)
    np.testing.assert_array_equal(plain.frames, original.frames)
    assert len(plain) == len(original)
    amn = replay.ReplayMemory(capacity=3 * 40, num_streams=3, outputs=OUTPUTS)
    with pytest.raises(ValueError, match="format 1") as error:
        amn.restore(path)
    message = str(error.value)
    assert "\n" not in message and "lacks the outputs" in message and "resume without --save_replay" in message
    assert amn.entries_written == 0  # nothing half-restored


def test_bytes_per_transition_with_outputs():
    plain = replay.ReplayMemory(1000, 1)
    q_only = replay.ReplayMemory(1000, 1, outputs={"q_values": ((18,), np.float32)})
    both = replay.ReplayMemory(1000, 1, outputs={"q_values": ((18,), np.float32),
                                                  "features": ((512,), np.float16)})
    assert plain.nbytes() / 1000 == 7062  # the DQN's memory: unchanged
    assert q_only.nbytes() / 1000 == 7062 + 72
    assert both.nbytes() / 1000 == 7062 + 72 + 1024
