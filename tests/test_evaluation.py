"""Test play: a fixed quota of episodes per emulator, whatever their lengths, each to its end
or to the per-episode cap; capped episodes scored with their return so far and counted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amn_tf import envs, evaluation


class FakeGames:
    """A batched game with ``envs.make_env``'s signature and ``VectorAtari``'s interface in
    which length and score go together: emulator k's i-th episode lasts ``2 + 4k + i``
    agent steps and earns 1 per step (return == length). Like ALE it cuts an episode at the
    protocol's frame limit (``truncated``) and starts the next one in the same step."""

    legal_actions = np.array([0, 1, 3, 4], np.int32)

    def __init__(self, game, num_envs, protocol, seed, backend):
        self.num_envs = num_envs
        self.cap = protocol.max_episode_frames // envs.FRAMES_PER_STEP
        self.episode = np.zeros(num_envs, np.int64)  # index of the running episode
        self.steps = np.zeros(num_envs, np.int64)  # its agent steps so far
        self.actions = []  # every batch of actions sent
        self.closed = False

    @staticmethod
    def length(emulator, episode):
        return 2 + 4 * emulator + episode

    def _obs(self):
        return np.zeros((self.num_envs, *envs.OBSERVATION_SHAPE), np.uint8)

    def reset(self):
        return self._obs()

    def step(self, actions):
        self.actions.append(np.array(actions))
        self.steps += 1
        natural = np.array([self.length(k, i) for k, i in enumerate(self.episode)])
        terminated = self.steps == natural
        truncated = ~terminated & (self.steps == self.cap)
        ended = terminated | truncated
        finished = [(int(k), float(self.steps[k]), int(self.steps[k])) for k in np.flatnonzero(ended)]
        self.episode[ended] += 1
        self.steps[ended] = 0
        obs = self._obs()
        return envs.StepResult(obs, np.ones(self.num_envs, np.float32), terminated, truncated,
                               np.zeros(self.num_envs, bool), obs, finished)

    def close(self):
        self.closed = True


def fake_factory(made):
    def make_env(*args):
        made.append(FakeGames(*args))
        return made[-1]
    return make_env


@pytest.mark.parametrize("episodes,num_envs,expected", [
    (30, 8, [4, 4, 4, 4, 4, 4, 3, 3]),
    (7, 3, [3, 2, 2]),
    (6, 3, [2, 2, 2]),
    (3, 8, [1, 1, 1]),  # never more emulators than episodes
    (5, 1, [5]),
    (1, 0, [1]),
])
def test_episode_quotas(episodes, num_envs, expected):
    assert evaluation.episode_quotas(episodes, num_envs) == expected
    assert sum(expected) == episodes


# 7 episodes, cap 10 agent steps; emulator k's episodes last 2+4k, 3+4k, ... steps (return =
# length; an episode reaching 10 steps without ending is cut there, return 10, capped):
#   1 emulator, quota 7:        2 3 4 5 6 7 8                      -> 35/7 = 5.0, 0 capped
#   3 emulators, quotas 3,2,2:  2 3 4 | 6 7 | 10 (ends at 10: a game over) 11->10c
#                                                                  -> 42/7 = 6.0, 1 capped
#   8 emulators -> 7, quota 1:  2 | 6 | 10 | 14->10c | 18->10c | 22->10c | 26->10c
#                                                                  -> 58/7,       4 capped
# Keeping the first 7 episodes to end instead would score 2 3 4 5 6 7 10 (mean 37/7) with 3
# emulators and with 8: the long episodes of the later emulators would never count.
@pytest.mark.parametrize("num_envs,returns,capped", [
    (1, [2, 3, 4, 5, 6, 7, 8], 0),
    (3, [2, 3, 4, 6, 7, 10, 10], 1),
    (8, [2, 6, 10, 10, 10, 10, 10], 4),
])
def test_quota_not_first_finished_and_capped_episodes_are_counted(num_envs, returns, capped):
    made = []
    result = evaluation.play(None, "Pong", "paper", 7, 1.0, num_envs, 10, seed=0,
                             make_env=fake_factory(made))
    (env,) = made
    assert env.num_envs == min(num_envs, 7) and env.cap == 10 and env.closed
    assert sorted(result.returns) == returns
    assert result.mean == pytest.approx(sum(returns) / 7)
    assert result.episodes == 7 and result.capped == capped
    assert result.agent_steps == sum(returns)  # 1 per step: the scored episodes' steps
    assert (result.max, result.min) == (max(returns), min(returns))
    assert result.game == "Pong"
    # The same as the mean over exactly the quota'd episodes, computed from the fake:
    quotas = evaluation.episode_quotas(7, num_envs)
    quota_returns = [min(FakeGames.length(k, i), 10) for k, q in enumerate(quotas) for i in range(q)]
    assert sorted(quota_returns) == returns
    assert f"over 7 episodes, {capped} capped" in result.line()
    assert result.as_dict()["capped"] == capped


def test_emulators_past_their_quota_idle():
    """A policy's actions reach only the emulators still playing their quota; the others
    get NOOP (whatever they play is not scored)."""
    made = []
    result = evaluation.play(lambda frames: np.full(len(frames), 3), "Breakout", "paper", 3, 0.0,
                             3, 10, seed=0, make_env=fake_factory(made))
    actions = np.array(made[0].actions)
    # Quotas 1,1,1: emulator 0 is done after 2 steps, emulator 1 after 6, emulator 2 after 10.
    assert len(actions) == 10
    np.testing.assert_array_equal(actions[:, 0], [3] * 2 + [0] * 8)
    np.testing.assert_array_equal(actions[:, 1], [3] * 6 + [0] * 4)
    np.testing.assert_array_equal(actions[:, 2], [3] * 10)
    assert sorted(result.returns) == [2, 6, 10] and result.capped == 0


def test_cap_never_exceeds_the_protocol_frame_limit():
    made = []
    evaluation.play(None, "Pong", envs.get_protocol("paper"), 1, 1.0, 1, 10**6, seed=0,
                    make_env=fake_factory(made))
    assert made[0].cap == 108_000 // 4 == 27_000


def test_episodes_running_past_the_cap_fail_loudly():
    class Endless(FakeGames):  # ignores its frame limit
        def __init__(self, *args):
            super().__init__(*args)
            self.cap = -1

    with pytest.raises(RuntimeError, match="past the cap of 5 agent steps"):
        evaluation.play(None, "Pong", "paper", 2, 1.0, 2, 5, seed=0,
                        make_env=lambda *args: Endless(*args))


def test_old_records_without_capped_still_load(tmp_path):
    # An eval.jsonl record written before ``capped`` existed (the run loop rebuilds its final test play from it).
    record = {"step": 600, "frames": 2400, "game": "Pong", "mean": -21.0, "std": 0.0,
              "max": -21.0, "min": -21.0, "episodes": 2, "agent_steps": 1600,
              "returns": [-21.0, -21.0]}
    result = evaluation.EvalResult.from_dict(record)
    assert result.capped == 0 and result.episodes == 2 and result.mean == -21.0
    assert "over 2 episodes, 0 capped (6,400 frames)" in result.line()
    assert evaluation.EvalResult.from_dict(result.as_dict()) == result

    from amn_tf import report

    # An old --mode=eval JSON and a new one (with "capped") both feed Table 1.
    old = {"saved_model": None, "random_policy": True, "results": [dict(record)]}
    new = {"saved_model": "experts/Pong/1", "kind": "expert", "random_policy": False,
           "results": [{**record, "mean": 3.0, "max": 5.0, "capped": 1}]}
    for name, payload in (("old", old), ("new", new)):
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
    loaded = [e for name in ("old", "new") for e in report.load_eval(str(tmp_path / f"{name}.json"))]
    assert [e["name"] for e in loaded] == ["random", "expert"]
    assert "| Pong | -21.0 | 3.0 (5) | 2 |" in report.saved_model_table(loaded)


@pytest.mark.parametrize("backend", ["vector", "gym"])
def test_real_game_quotas_and_cap(backend):
    """Random Breakout, 3 episodes on 2 emulators (quotas 2 and 1), cut at 250 agent steps:
    the scored episodes are each emulator's first ones, capped exactly when cut."""
    ended = {}  # emulator -> [(return, agent steps, truncated)] of every episode it ended

    def make_env(*args):
        env = envs.make_env(*args)
        step = env.step

        def recording_step(actions):
            result = step(actions)
            for index, episode_return, length in result.episode_returns:
                ended.setdefault(index, []).append(
                    (episode_return, length, bool(result.truncated[index])))
            return result

        env.step = recording_step
        return env

    result = evaluation.play(None, "Breakout", "paper", 3, 1.0, 2, 250, seed=0, backend=backend,
                             make_env=make_env)
    assert result.game == "Breakout" and result.episodes == 3 == len(result.returns)
    scored = ended[0][:2] + ended[1][:1]  # quotas 2, 1
    assert sorted(result.returns) == sorted(r for r, _, _ in scored)
    assert result.agent_steps == sum(n for _, n, _ in scored)
    assert result.capped == sum(t for _, _, t in scored)
    # Every episode ends by 250 agent steps (on gym the no-op start frames count too) and
    # only cut episodes reach the cap.
    assert all(n <= 250 for _, n, _ in scored)
    if backend == "vector":
        assert all((n == 250) == t for _, n, t in scored)
    # Seeded: random Breakout episodes run 130-250 steps, so some are cut and some are not.
    assert 0 < result.capped < 3


def test_mode_eval_plays_and_names_the_eval_stream_of_its_seed(tmp_path, monkeypatch):
    """--mode=eval plays from seeds.eval_play(--seed), never a training test play's emulator
    seeds, and its eval JSON names that stream ("episodes": stream, seed, first emulator seed)."""
    from amn_tf import config, evaluate, seeds

    played, labels = [], []

    def recording_play(policy, game, protocol, episodes, epsilon, num_envs, max_steps, seed, backend,
                       progress=None):
        played.append(seed)
        labels.append(progress.label)  # long plays print progress lines
        return evaluation.play(policy, game, protocol, episodes, epsilon, num_envs, max_steps, seed,
                               backend, make_env=fake_factory([]), progress=progress)

    monkeypatch.setattr(evaluate, "play", recording_play)
    output = tmp_path / "eval.json"
    run = config.EvalRunConfig(None, "Pong", True, config.EnvConfig("paper", "vector", 4, 5),
                               config.EvalConfig(0.05, 3, 10, 2), str(output), 5)
    payload = evaluate.run(run)
    assert played == [seeds.eval_play(5)] and labels == ["[eval] Pong (random policy)"]
    assert payload["episodes"] == {"stream": "eval", "seed": 5, "emulator_seed": seeds.eval_play(5)}
    assert json.loads(output.read_text())["episodes"] == payload["episodes"]
    # None of the emulators it seeded (2 here, up to seeds.BLOCK) is any training test play's
    # of the same seed: not those that chose a --keep_best snapshot.
    emulators = set(range(played[0], played[0] + seeds.BLOCK))
    assert not any(seeds.test_play(5, k, i) + e in emulators for k in range(1000) for i in range(18)
                   for e in (0, seeds.BLOCK - 1))


def test_in_parallel_keeps_the_order_of_the_calls_and_reports_each_as_it_ends():
    import collections
    import threading

    threads, finished = set(), []
    ended = collections.defaultdict(threading.Event)  # call index -> set when it has ended

    def call(index, after=None):
        def run():  # ends once call ``after`` has ended (whatever the threads' scheduling)
            if after is not None:
                assert ended[after].wait(30), f"call {after} never ended"
            threads.add(threading.current_thread().name)
            ended[index].set()
            return index * 10
        return run

    results = evaluation.in_parallel([call(0, after=2), call(1), call(2, after=1)],
                                     done=lambda index, result: finished.append((index, result)))
    assert results == [0, 10, 20]
    assert finished == [(1, 10), (2, 20), (0, 0)]  # as they ended, in this thread
    # played off this thread, on more than one (call 0 waits on a thread while 1 and 2 run)
    assert len(threads) >= 2 and all(name.startswith("test-play") for name in threads)
    assert evaluation.in_parallel([call(4)]) == [40]  # one call


def test_in_parallel_raises_a_failure_after_every_call_ended():
    import time

    ended = []

    def slow():
        time.sleep(0.2)
        ended.append("slow")
        return 1

    def broken():
        raise ValueError("emulator gone")

    with pytest.raises(ValueError, match="emulator gone"):
        evaluation.in_parallel([slow, broken])
    assert ended == ["slow"]


def test_games_played_in_parallel_score_as_when_played_one_after_another():
    """Three games of the shipped AMN-feature SavedModel, each on its own seeds: the same
    returns and steps played in threads as alone, one after another."""
    from amn_tf import export

    loaded = export.LoadedPolicy("saved_models/amn/amn-feature/1")
    games = loaded.games[:3]

    def one(index, game):
        return evaluation.play(evaluation.saved_model_policy(loaded, game), game, "paper", 3, 0.05, 2, 150,
                               seed=100 + 31 * index)

    alone = [one(i, g) for i, g in enumerate(games)]
    together = evaluation.in_parallel([lambda i=i, g=g: one(i, g) for i, g in enumerate(games)])
    assert [r.as_dict() for r in together] == [r.as_dict() for r in alone]
    assert len({tuple(r.returns) for r in alone}) > 1 or len({r.agent_steps for r in alone}) > 1


# ---------------------------------------------------------------- progress lines of long plays
@pytest.mark.parametrize("quotas,played,running,lengths,max_steps,expected", [
    # no episode ended yet: the cap's bound, the slowest emulator's: 2 episodes x 10 - 3 steps
    ([2, 1], [0, 0], [3, 3], [], 10, (17, True)),
    # ended lengths 3 and 5 (mean 4): emulator 0 has 1 episode left, begun 1 step ago: the mean
    # of those longer than 1 step (4) - 1 = 3; emulator 1 has 2 left, the first begun 2 ago:
    # 4 - 2 + 4 = 6
    ([2, 2], [1, 0], [1, 2], [3, 5], 10, (6, False)),
    # begun 5 ago: only the episodes that outlasted 5 steps tell (6 and 10: 8 - 5 = 3), the next
    # one the mean of all (6): 9
    ([2], [0], [5], [2, 6, 10], 20, (9, False)),
    # running longer than any ended episode: one mean more (4), unless the cap comes first (10 - 9)
    ([1], [0], [9], [3, 5], 20, (4, False)),
    ([1], [0], [9], [3, 5], 10, (1, True)),
    # an estimate above another emulator's bound is the figure (not "at most")
    ([2, 2], [1, 1], [9, 0], [4, 4], 10, (4, False)),
    # emulators done with their quota count for nothing
    ([1, 1], [1, 0], [50, 0], [4], 10, (4, False)),
    ([1, 1], [1, 1], [0, 0], [4, 4], 10, (0, False)),
])
def test_steps_left_by_hand(quotas, played, running, lengths, max_steps, expected):
    assert evaluation.steps_left(quotas, played, running, lengths, max_steps) == expected


class Clock:
    """Seconds that move by ``tick`` at each reading."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_a_long_play_prints_progress_and_a_short_one_nothing():
    """FakeGames, 7 episodes on 3 emulators, cap 10 (quotas 3, 2, 2): emulator 0's episodes end
    at vector steps 2, 5 and 9, emulator 1's at 6 and 13, emulator 2's at 10 and 20 (capped).
    The clock moves 1 s per reading and a line is due every 5 s: lines at vector steps 5, 10, 15
    and 20, with 2, 5, 6 and 7 episodes scored."""
    lines = []
    progress = evaluation.PlayProgress("[eval] Pong", write=lines.append, every=5.0, clock=Clock(1.0))
    result = evaluation.play(None, "Pong", "paper", 7, 1.0, 3, 10, seed=0, make_env=fake_factory([]),
                             progress=progress)
    assert sorted(result.returns) == [2, 3, 4, 6, 7, 10, 10]
    assert len(lines) == 4
    # By vector step 5: emulator 0 ended episodes of 2 and 3 steps, nothing else: 2 of 7 scored,
    # frames = (2 + 3 scored + 0 running on emulator 0 + 5 + 5 running) x 4 = 60, in 5 s.
    # Emulator 0 has 1 left (mean of the ended 2 and 3: 2.5 steps); emulators 1 and 2 have run
    # 5 steps into their first episodes, longer than any that ended: one mean more (2.5) and
    # their second episode (2.5): 5 vector steps at 1 s each (under the cap's 2 x 10 - 5).
    assert lines[0] == ("[eval] Pong: 2/7 episodes | frames 60 | 12 frames/s | ETA 0m05s | "
                        "last episode 3.0")
    # By step 10 (ended: 2, 3, 4 on emulator 0, 6 on 1, 10 on 2): emulator 1 has 1 left, begun
    # 4 steps ago: those longer than 4 (6, 10) -> 8 - 4 = 4; emulator 2 has 1 left, just begun:
    # the mean of all 5 (5) -> 5 vector steps: ETA 5 s. Frames: (25 scored + 4 running) x 4.
    assert lines[1] == ("[eval] Pong: 5/7 episodes | frames 116 | 12 frames/s | ETA 0m05s | "
                        "last episode 10.0")
    assert all(line.startswith("[eval] Pong: ") for line in lines)
    scored = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert scored == [2, 5, 6, 7]
    assert lines[-1].endswith("| ETA 0m00s | last episode 10.0")

    quiet = []
    evaluation.play(None, "Pong", "paper", 7, 1.0, 3, 10, seed=0, make_env=fake_factory([]),
                    progress=evaluation.PlayProgress("[eval] Pong", write=quiet.append, every=100.0,
                                                     clock=Clock(1.0)))
    assert quiet == []  # a play shorter than the interval prints nothing


def test_before_any_episode_ends_the_eta_is_the_caps_bound():
    lines = []
    progress = evaluation.PlayProgress("[dqn Pong] test play", write=lines.append, every=1.0, clock=Clock(1.0))
    # One emulator, 1 episode, cap 10: its episode lasts 2 steps (FakeGames), so the first
    # line (vector step 1) comes before it ends: 10 - 1 = 9 steps left at most, 1 s each.
    evaluation.play(None, "Pong", "paper", 1, 1.0, 1, 10, seed=0, make_env=fake_factory([]), progress=progress)
    assert lines[0] == ("[dqn Pong] test play: 0/1 episodes | frames 4 | 4 frames/s | "
                        "ETA at most 0m09s (episodes to the cap) | last episode -")
