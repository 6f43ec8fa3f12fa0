"""Epsilon-greedy test play against a live model or a SavedModel.

Test play follows the run's protocol except that a life loss never ends anything, and
returns are unclipped. Which episodes are scored does not depend on how long they last:
each emulator plays a fixed quota of the episodes (``episode_quotas``), each to its end or
to the per-episode cap, and the score is the mean over exactly those episodes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from concurrent import futures

import numpy as np

from amn_tf import envs, faults, parts, seeds

IDLE_ACTION = 0  # NOOP, sent to emulators that have played their quota
PROGRESS_SECONDS = 30.0  # a play that lasts longer prints a progress line this often


@dataclasses.dataclass
class EvalResult:
    game: str
    mean: float
    std: float
    max: float
    min: float
    episodes: int
    agent_steps: int  # of the scored episodes
    returns: list
    capped: int = 0  # scored episodes cut by the per-episode cap (absent from older records)

    @classmethod
    def from_dict(cls, record: dict) -> EvalResult:
        """From ``as_dict`` output or a record holding it (eval.jsonl), other keys ignored;
        records written before ``capped`` existed load with 0."""
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        return (f"{self.game}: mean {self.mean:.1f} std {self.std:.1f} max {self.max:.1f} "
                f"over {self.episodes} episodes, {self.capped} capped "
                f"({self.agent_steps * envs.FRAMES_PER_STEP:,} frames)")


def episode_quotas(episodes: int, num_envs: int) -> list:
    """Episodes each emulator plays: ``episodes`` spread evenly over at most ``episodes``
    emulators, the first ones taking one more (30 over 8: 4,4,4,4,4,4,3,3)."""
    num_envs = max(1, min(num_envs, episodes))
    base, extra = divmod(episodes, num_envs)
    return [base + (index < extra) for index in range(num_envs)]


def steps_left(quotas, played, running, lengths, max_steps) -> tuple:
    """The vector steps a play still needs, and whether that is only the cap's bound.

    Each emulator still playing has ``quota - played`` episodes left, the first of them begun
    ``running`` agent steps ago; the play ends with the slowest emulator. From the lengths of the
    episodes that ended (``lengths``, agent steps): an episode not yet begun lasts their mean; the
    running one, begun ``running`` steps ago, lasts the mean of those that outlasted it, or, when
    it has outlasted them all, one mean more (the memoryless guess: nothing ended tells how much
    longer it runs). No emulator's figure passes the bound the episode cap sets (its episodes
    lasting ``max_steps`` each), which is all that is known before any episode has ended.
    Returns (vector steps, True when the slowest emulator's figure is that bound)."""
    mean = min(sum(lengths) / len(lengths), max_steps) if len(lengths) else None
    left, bound = 0.0, False
    for quota, done, steps in zip(quotas, played, running):
        episodes = int(quota) - int(done)
        if episodes <= 0:
            continue
        cap = episodes * max_steps - steps
        if mean is None:
            this, capped = cap, True
        else:
            longer = [length for length in lengths if length > steps]
            running_left = sum(longer) / len(longer) - steps if longer else mean
            guess = running_left + (episodes - 1) * mean
            this, capped = (cap, True) if cap <= guess else (guess, False)
        if this > left or (this == left and capped):
            left, bound = this, capped
    return int(math.ceil(left)), bound


class PlayProgress:
    """Progress lines of one long play, so that a test play or an evaluation of long episodes
    (Atlantis, Enduro, CrazyClimber: minutes) is never silent: episodes scored of the total,
    frames played, frames/s, the ETA (``steps_left`` at the play's own vector-step rate; "at
    most" where the episode cap bounds it, as before any episode has ended) and the latest return. At most one line
    every ``every`` seconds, the first after ``every`` seconds: a play that ends sooner prints
    nothing. ``write`` takes the line (print); ``clock`` (seconds) is injectable for tests."""

    def __init__(self, label: str, write=print, every: float = PROGRESS_SECONDS, clock=time.monotonic):
        self.label = label
        self._write = write
        self._every = every
        self._clock = clock
        self._start = self._last = None

    def begin(self) -> None:
        """The play starts now (``play`` calls it once its emulators are reset)."""
        self._start = self._last = self._clock()

    def update(self, iterations, quotas, played, running, returns, lengths, max_steps) -> str | None:
        """After ``iterations`` vector steps: writes (and returns) a line when one is due."""
        now = self._clock()
        if now - self._last < self._every:
            return None
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        active = np.asarray(played) < np.asarray(quotas)
        frames = (int(sum(lengths)) + int(np.asarray(running)[active].sum())) * envs.FRAMES_PER_STEP
        left, bound = steps_left(quotas, played, running, lengths, max_steps)
        eta = parts.duration(left * elapsed / max(iterations, 1))
        eta = f"at most {eta} (episodes to the cap)" if bound else eta
        last = f"{returns[-1]:,.1f}" if returns else "-"
        line = (f"{self.label}: {len(returns)}/{int(sum(quotas))} episodes | frames {frames:,} | "
                f"{frames / elapsed:,.0f} frames/s | ETA {eta} | last episode {last}")
        self._write(line)
        return line


def _test_actions(policy, obs, rng, legal, epsilon) -> np.ndarray:
    """Test play's epsilon-greedy ids (``policy`` None: uniformly random). It draws the random
    actions before the exploration coins, unlike ``policies.epsilon_greedy``, and keeps that
    order so a test play from the same emulator seed reruns to the same episodes."""
    random_actions = envs.random_legal_actions(rng, legal, len(obs))
    if policy is None:
        return random_actions
    greedy = np.asarray(policy(obs), np.int32)
    explore = rng.random(len(obs)) < epsilon
    return np.where(explore, random_actions, greedy)


def in_parallel(calls: list, done=None) -> list:
    """Runs each zero-argument callable (one game's test play) in a thread of its own and returns
    their results in the order of ``calls``; ``done(index, result)`` is called in this thread as
    each succeeds. Each game's play is its own (emulators, exploration generator, seeds), so the
    results are those of playing the games one after another; meanwhile one game's emulators
    step (in their C++ threads) while another game's network chooses. A failure is raised here
    once every call has ended (the first in the order of ``calls``)."""
    with futures.ThreadPoolExecutor(max_workers=max(1, len(calls)), thread_name_prefix="test-play") as pool:
        running = {pool.submit(call): index for index, call in enumerate(calls)}
        for future in futures.as_completed(running):
            if done and future.exception() is None:
                done(running[future], future.result())
    return [future.result() for future in running]


def test_plays(policies, games, protocol, test_play, seed, plays_so_far, backend, label=None) -> list:
    """A training run's test play number ``plays_so_far`` of several games, ``policies[i]``
    playing ``games[i]`` under ``test_play`` (a ``config.EvalConfig``) on that game's own
    test-play seeds, the games in parallel threads (``in_parallel``): the EvalResults in game order.
    With ``label`` (the run's), a game whose play lasts long prints progress lines (``PlayProgress``)."""
    return in_parallel([functools.partial(play, policy, game, protocol, test_play.episodes, test_play.epsilon,
                                          test_play.num_envs, test_play.max_steps,
                                          seeds.test_play(seed, plays_so_far, index), backend,
                                          progress=PlayProgress(f"[{label}] test play of {game}") if label else None)
                        for index, (policy, game) in enumerate(zip(policies, games))])


def play(policy, game, protocol, episodes, epsilon, num_envs, max_steps, seed, backend="vector",
         make_env=envs.make_env, progress=None):
    """Plays ``episodes`` episodes of ``game`` on up to ``num_envs`` emulators.

    Emulator k plays ``episode_quotas(episodes, num_envs)[k]`` episodes and then idles (its
    further episodes are not scored), so short episodes are not favoured over long ones.
    An episode ends at game over or after ``max_steps`` agent steps (and at the protocol's
    own frame limit); a capped episode is scored with its return so far and counted in
    ``capped``. The cap is the emulator's frame limit (``max_steps`` x 4 frames): with the
    gym backend the episode's no-op start frames count towards it.

    Args:
      policy: callable ``frames [N, 84, 84, 4] uint8 -> greedy ALE ids [N]``, or None for
        uniformly random legal actions.
      seed: the first emulator seed, from the stream that names these episodes
        (``seeds.test_play`` during training, ``seeds.eval_play`` for ``--mode=eval``):
        emulator k is seeded ``seed + k``, the exploration generator ``seed + 7919``.
      make_env: builds the batched game, ``envs.make_env``'s signature (tests pass fakes).
      progress: a ``PlayProgress`` for this play's progress lines, or None (silent).
    Returns:
      EvalResult over the ``episodes`` scored episodes (returns in the order they ended).
    """
    rng = np.random.default_rng(seed + seeds.TEST_PLAY_EXPLORATION)
    quotas = np.asarray(episode_quotas(episodes, num_envs))
    num_envs = len(quotas)
    if isinstance(protocol, str):
        protocol = envs.get_protocol(protocol)
    cap_frames = min(protocol.max_episode_frames, max_steps * envs.FRAMES_PER_STEP)
    env = make_env(game, num_envs, dataclasses.replace(protocol, max_episode_frames=cap_frames),
                   seed, backend)
    played = np.zeros(num_envs, np.int64)
    running = np.zeros(num_envs, np.int64)  # agent steps of each emulator's running episode
    returns, lengths, capped = [], [], 0
    try:
        legal = env.legal_actions
        obs = env.reset()
        if progress is not None:
            progress.begin()
        # Every episode ends within max_steps agent steps, so this bounds the loop.
        for iteration in range(1, int(quotas.max()) * max_steps + 1):
            active = played < quotas
            if not active.any():
                break
            actions = _test_actions(policy, obs, rng, legal, epsilon)
            result = env.step(np.where(active, actions, IDLE_ACTION).astype(np.int32))
            if iteration == 2:
                faults.fault_point("evaluation")
            running += active
            for index, episode_return, length in result.episode_returns:
                running[index] = 0
                if played[index] < quotas[index]:
                    played[index] += 1
                    returns.append(episode_return)
                    lengths.append(length)
                    capped += bool(result.truncated[index])
            obs = result.obs
            if progress is not None:
                progress.update(iteration, quotas, played, running, returns, lengths, max_steps)
    finally:
        env.close()
    if (played < quotas).any():
        raise RuntimeError(f"test play of {game}: episodes ran past the cap of {max_steps} "
                           f"agent steps (played {played.tolist()} of {quotas.tolist()})")
    array = np.asarray(returns, np.float64)
    return EvalResult(envs.canonical_game(game), float(array.mean()), float(array.std()),
                      float(array.max()), float(array.min()), len(returns), int(sum(lengths)),
                      [float(v) for v in returns], capped)


def saved_model_policy(loaded, game):
    """Greedy ALE ids from a ``export.LoadedPolicy`` for ``game``."""
    return lambda frames: loaded.act(frames, game)
