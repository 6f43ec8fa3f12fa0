"""Game names, legal action sets, and both environment back ends on real ALE games."""

from __future__ import annotations

import numpy as np
import pytest

from amn_tf import envs

BACKENDS = ["vector", "gym"]
# Deterministic play: no sticky actions, no no-op starts.
DETERMINISTIC = envs.Protocol("t", 0.0, 0, False)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("Pong", "Pong"),
        ("pong", "Pong"),
        ("ALE/Pong-v5", "Pong"),
        ("PongNoFrameskip-v4", "Pong"),
        ("space_invaders", "SpaceInvaders"),
        ("SpaceInvaders", "SpaceInvaders"),
        ("space invaders", "SpaceInvaders"),
        (" Breakout ", "Breakout"),
    ],
)
def test_canonical_game(name, expected):
    assert envs.canonical_game(name) == expected


def test_unknown_game_suggests_close_names():
    with pytest.raises(envs.UnknownGameError, match="Pong") as info:
        envs.canonical_game("Pongg")
    assert "Pongg" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(envs.UnknownGameError):
        envs.canonical_game("definitely_not_an_atari_game")


def test_rom_id():
    assert envs.rom_id("SpaceInvaders") == "space_invaders"
    assert envs.rom_id("ALE/Pong-v5") == "pong"


def test_legal_actions():
    np.testing.assert_array_equal(envs.legal_actions("Pong"), [0, 1, 3, 4, 11, 12])
    np.testing.assert_array_equal(envs.legal_actions("Breakout"), [0, 1, 3, 4])
    np.testing.assert_array_equal(envs.legal_actions("Seaquest"), np.arange(18))
    assert envs.legal_actions("Pong").dtype == np.int32
    with pytest.raises(ValueError):  # cached array is read-only: callers cannot corrupt it
        envs.legal_actions("Pong")[0] = 5


def test_legal_mask():
    mask = envs.legal_mask("Breakout")
    assert mask.dtype == bool and mask.shape == (18,)
    np.testing.assert_array_equal(np.flatnonzero(mask), [0, 1, 3, 4])
    assert envs.legal_mask("Seaquest").all()


def test_random_legal_actions_stay_legal():
    rng = np.random.default_rng(0)
    legal = envs.legal_actions("Pong")
    actions = envs.random_legal_actions(rng, legal, 2000)
    assert actions.dtype == np.int32
    assert set(actions.tolist()) == set(legal.tolist())  # all legal ids, and only those


def test_unknown_backend_and_protocol():
    with pytest.raises(ValueError, match="backend"):
        envs.make_env("Pong", 1, "paper", 0, backend="nope")
    with pytest.raises(ValueError, match="protocol"):
        envs.get_protocol("nope")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_shapes_steps_and_episode_returns(backend):
    # Episodes truncated after 200 emulator frames = 50 agent steps.
    protocol = envs.Protocol("short", 0.0, 0, False, max_episode_frames=200)
    env = envs.make_env("ALE/Pong-v5", 2, protocol, seed=0, backend=backend)
    try:
        np.testing.assert_array_equal(env.legal_actions, [0, 1, 3, 4, 11, 12])
        obs = env.reset()
        assert obs.dtype == np.uint8 and obs.shape == (2, 84, 84, 4)
        assert not obs[..., :3].any() and obs[..., 3].any()  # zero-padded first stack
        rng = np.random.default_rng(1)
        totals = np.zeros(2)
        for step in range(50):
            result = env.step(envs.random_legal_actions(rng, env.legal_actions, 2))
            assert result.obs.dtype == np.uint8 and result.obs.shape == (2, 84, 84, 4)
            assert result.reward.dtype == np.float32 and result.reward.shape == (2,)
            totals += result.reward
            assert not result.terminated.any() and not result.life_lost.any()
            if step < 49:
                assert not result.truncated.any() and result.episode_returns == []
                np.testing.assert_array_equal(result.final_obs, result.obs)
                # The stack shifts by one frame per step.
                np.testing.assert_array_equal(result.obs[..., :3], obs[..., 1:])
                obs = result.obs
        assert result.truncated.all()
        assert sorted(result.episode_returns) == [(0, totals[0], 50), (1, totals[1], 50)]
        # Same-step reset: obs is the new episode's zero-padded first stack, final_obs
        # the ended episode's last stack (the previous one shifted by a frame).
        assert not result.obs[..., :3].any() and result.obs[..., 3].any()
        np.testing.assert_array_equal(result.final_obs[..., :3], obs[..., 1:])
        assert result.final_obs[..., 3].any()
    finally:
        env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_send_recv_equals_step(backend):
    first = envs.make_env("Pong", 1, DETERMINISTIC, seed=0, backend=backend)
    second = envs.make_env("Pong", 1, DETERMINISTIC, seed=0, backend=backend)
    try:
        np.testing.assert_array_equal(first.reset(), second.reset())
        for action in [1, 3, 3, 4, 11, 12, 0] * 3:
            first.send(np.array([action], np.int32))
            a = first.recv()
            b = second.step(np.array([action], np.int32))
            np.testing.assert_array_equal(a.obs, b.obs)
    finally:
        first.close()
        second.close()


def test_backends_agree_when_deterministic():
    vector = envs.make_env("Pong", 2, DETERMINISTIC, seed=3, backend="vector")
    gym = envs.make_env("Pong", 2, DETERMINISTIC, seed=3, backend="gym")
    try:
        obs_vector, obs_gym = vector.reset(), gym.reset()
        np.testing.assert_array_equal(obs_vector, obs_gym)
        first = obs_vector.copy()
        rng = np.random.default_rng(5)
        differed_between_envs = False
        for _ in range(150):
            # Different actions in the two envs, same actions across back ends.
            actions = envs.random_legal_actions(rng, vector.legal_actions, 2)
            a, b = vector.step(actions), gym.step(actions)
            # Measured: identical pixels (both max-pool the last two frames and resize
            # with INTER_AREA), so demand exact equality rather than a tolerance.
            np.testing.assert_array_equal(a.obs, b.obs)
            np.testing.assert_array_equal(a.reward, b.reward)
            differed_between_envs |= not np.array_equal(a.obs[0], a.obs[1])
        assert differed_between_envs  # the actions matter: equality is not vacuous
        assert not np.array_equal(a.obs, first)
    finally:
        vector.close()
        gym.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_breakout_life_loss_then_game_over(backend):
    env = envs.make_env("Breakout", 1, DETERMINISTIC, seed=0, backend=backend)
    try:
        env.reset()
        rng = np.random.default_rng(0)
        lives_lost, total = 0, 0.0
        for _ in range(3000):
            result = env.step(envs.random_legal_actions(rng, env.legal_actions, 1))
            total += float(result.reward[0])
            lives_lost += int(result.life_lost[0])
            if result.terminated[0]:
                break
        else:
            pytest.fail("Breakout did not end within 3000 random steps")
        # Five lives: four losses are reported as life_lost, the fifth as game over.
        assert lives_lost == 4
        assert not result.life_lost[0] and not result.truncated[0]
        assert len(result.episode_returns) == 1
        index, episode_return, length = result.episode_returns[0]
        assert index == 0 and episode_return == total and length > 4
    finally:
        env.close()


def test_gym_backend_draws_0_to_29_noop_frames_like_the_vector_env():
    """Both back ends start each paper-protocol episode with 0..29 no-op frames (ALE's
    vector env draws uniform in [0, noop_max); the gym back end must agree)."""
    env = envs.make_env("Pong", 1, "paper", seed=0, backend="gym")
    try:
        wrapper = env._envs[0]
        while type(wrapper).__name__ != "NoopStart":
            wrapper = wrapper.env
        draws = []
        wrapper.reset(seed=0)  # then unseeded resets: each draw is the generator's next
        for _ in range(300):
            wrapper.reset()
            draws.append(wrapper.noops)
        assert min(draws) == 0 and max(draws) == envs.get_protocol("paper").noop_max - 1 == 29
        assert len(set(draws)) == 30  # uniform over all 30 values (300 draws: each seen)
        # Seeded: the same seed gives the same start.
        wrapper.reset(seed=7)
        first = wrapper.noops
        wrapper.reset(seed=7)
        assert wrapper.noops == first
    finally:
        env.close()


@pytest.mark.parametrize("shape", [(3, 4, 84, 84), (2, 5, 84, 84), (1, 8, 84, 84), (0, 4, 84, 84)])
def test_channels_last_is_the_contiguous_transpose(shape):
    frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    stacked = envs.channels_last(frames)
    np.testing.assert_array_equal(stacked, frames.transpose(0, 2, 3, 1))
    assert stacked.flags["C_CONTIGUOUS"] and stacked.dtype == np.uint8
    assert envs.channels_last(frames[:, 1:]).shape == (shape[0], 84, 84, shape[1] - 1)  # a strided view in
