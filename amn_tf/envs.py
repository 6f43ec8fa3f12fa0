"""Atari games: names, legal action sets over the 18 ALE ids, and batched environments.

Every environment here speaks *ALE action ids* (0..17, the full action set) and returns
uint8 observations of shape ``[N, 84, 84, 4]`` (channels last, newest frame last).  Two
back ends give the same semantics:

* ``VectorAtari``: ``ale_py.vector_env.AtariVectorEnv``, emulators stepped in C++ threads,
  with ``send``/``recv`` so the learner can run while the emulators step.
* ``GymAtari``: N gymnasium ``ALE/<Game>-v5`` envs (frameskip 1) wrapped in
  ``AtariPreprocessing`` and ``FrameStackObservation(4, padding_type="zero")``, stepped in turn.

Both: max over the last two frames, action repeat 4, 84x84 luminance, zero-padded stacks
at episode start, same-step auto-reset (the final observation of an ended episode is in
``StepResult.final_obs``), unclipped rewards (clipping is the learner's business), and a
``life_lost`` flag so the learner decides whether a life loss is terminal.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re

import numpy as np

NUM_ACTIONS = 18
ACTION_NAMES = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT",
    "DOWNLEFT", "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE",
    "DOWNRIGHTFIRE", "DOWNLEFTFIRE",
)  # fmt: skip
FRAME_SHAPE = (84, 84)
STACK = 4
OBSERVATION_SHAPE = (84, 84, STACK)
FRAMES_PER_STEP = 4  # action repeat: one agent step is 4 emulator frames
# The paper's eight Table 1 source games: what --mode=amn distills from the shipped experts when
# neither --games nor --experts is given (saved_models/experts/ ships others too, e.g. DemonAttack).
TABLE1_GAMES = ("Atlantis", "Boxing", "Breakout", "CrazyClimber", "Enduro", "Pong", "Seaquest", "SpaceInvaders")


class UnknownGameError(ValueError):
    """A game name that no ROM shipped with ale-py answers to."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How episodes are run (docs/design.md, section 3)."""

    name: str
    repeat_action_probability: float  # sticky actions
    # 0..noop_max-1 no-op emulator frames, uniform, at the start of each episode (0: none):
    # ALE's vector env draws so, and the gym backend does the same (``_NoopStart``).
    noop_max: int
    life_loss_terminal: bool  # a life loss ends the episode *for learning* only
    max_episode_frames: int = 108_000  # 30 minutes of play at 60 Hz


PROTOCOLS = {
    # Nature DQN, used by the paper: no sticky actions, no-op starts, life loss terminal.
    "paper": Protocol("paper", 0.0, 30, True),
    # Machado et al. 2018: sticky actions 0.25, no no-op starts, no life-loss signal.
    "machado": Protocol("machado", 0.25, 0, False),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}: choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def _rom_ids() -> list[str]:
    from ale_py import roms

    return list(roms.get_all_rom_ids())


def _camel(rom_id: str) -> str:
    return "".join(part.capitalize() for part in rom_id.split("_"))


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_game(name: str) -> str:
    """Returns the CamelCase name of a game ('Pong', 'SpaceInvaders').

    Accepts 'Pong', 'pong', 'ALE/Pong-v5', 'PongNoFrameskip-v4', 'space_invaders',
    'SpaceInvaders', 'space invaders'.

    Raises:
      UnknownGameError: with the closest known names in the message.
    """
    text = str(name).strip()
    text = re.sub(r"^ALE/", "", text)
    text = re.sub(r"(NoFrameskip)?-v\d+$", "", text)
    by_key = {_squash(rom): rom for rom in _rom_ids()}
    key = _squash(text)
    if key in by_key:
        return _camel(by_key[key])
    close = difflib.get_close_matches(key, list(by_key), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(_camel(by_key[c]) for c in close)}?" if close else ""
    raise UnknownGameError(f"unknown game {name!r}{hint} (ale-py ships {len(by_key)} ROMs)")


def rom_id(game: str) -> str:
    """'SpaceInvaders' -> 'space_invaders' (the name ale-py's ROM registry uses)."""
    key = _squash(canonical_game(game))
    return next(rom for rom in _rom_ids() if _squash(rom) == key)


@functools.cache
def legal_actions(game: str) -> np.ndarray:
    """The game's minimal action set as ALE action ids (sorted, int32)."""
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(rom_id(game)))
    ids = sorted(int(action.value) for action in ale.getMinimalActionSet())
    result = np.asarray(ids, dtype=np.int32)
    result.setflags(write=False)
    return result


def channels_last(frames) -> np.ndarray:
    """Frame stacks ``[N, C, 84, 84]`` (as the emulators and the replay hold them) as a
    contiguous ``[N, 84, 84, C]`` (the stack last, as the networks take it): one copy per
    channel, 3-4x faster than copying the transposed view, whose innermost stride is a frame."""
    frames = np.asarray(frames)
    out = np.empty((frames.shape[0], *frames.shape[2:], frames.shape[1]), frames.dtype)
    for channel in range(frames.shape[1]):
        out[..., channel] = frames[:, channel]
    return out


def legal_mask(game: str) -> np.ndarray:
    """Boolean ``[18]`` mask, True at the game's legal ALE action ids."""
    mask = np.zeros(NUM_ACTIONS, dtype=bool)
    mask[legal_actions(game)] = True
    return mask


@dataclasses.dataclass
class StepResult:
    """One batched step. Arrays are indexed by environment."""

    obs: np.ndarray  # [N, 84, 84, 4] uint8: next observation (a new episode's first where one ended)
    reward: np.ndarray  # [N] float32, unclipped
    terminated: np.ndarray  # [N] bool: game over
    truncated: np.ndarray  # [N] bool: frame limit reached
    life_lost: np.ndarray  # [N] bool: a life was lost on this step and the game goes on
    final_obs: np.ndarray  # [N, 84, 84, 4]: last observation of ended episodes, else == obs
    episode_returns: list  # [(env index, unclipped return, agent steps)] for ended episodes


class _EpisodeTracker:
    """Running unclipped returns and lengths, shared by both back ends."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, np.float64)
        self.lengths = np.zeros(num_envs, np.int64)

    def update(self, reward, ended):
        self.returns += reward
        self.lengths += 1
        finished = [
            (int(i), float(self.returns[i]), int(self.lengths[i])) for i in np.flatnonzero(ended)
        ]
        self.returns[ended] = 0.0
        self.lengths[ended] = 0
        return finished


class VectorAtari:
    """Batched game on ``ale_py.vector_env.AtariVectorEnv`` (C++ threads)."""

    def __init__(self, game: str, num_envs: int, protocol: Protocol, seed: int, num_threads=0):
        from ale_py import vector_env

        self.game = canonical_game(game)
        self.num_envs = num_envs
        self.protocol = protocol
        self.legal_actions = legal_actions(self.game)
        self._seed = seed
        self._env = vector_env.AtariVectorEnv(
            rom_id(self.game),
            num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=protocol.max_episode_frames,
            repeat_action_probability=protocol.repeat_action_probability,
            full_action_space=True,  # actions are ALE ids; we only ever send legal ones
            autoreset_mode="SameStep",
            img_height=84,
            img_width=84,
            grayscale=True,
            stack_num=STACK,
            frameskip=FRAMES_PER_STEP,
            maxpool=True,
            noop_max=protocol.noop_max,
            episodic_life=False,
            life_loss_info=False,
            reward_clipping=False,
            use_fire_reset=False,
        )
        self._tracker = _EpisodeTracker(num_envs)
        self._lives = np.zeros(num_envs, np.int64)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts new episodes in every env (seeded ``seed``, ``seed + 1``, ...)."""
        if seed is not None:
            self._seed = seed
        obs, info = self._env.reset(seed=int(self._seed))
        self._lives = np.asarray(info["lives"], np.int64)
        self._tracker = _EpisodeTracker(self.num_envs)
        return channels_last(obs)

    def send(self, actions: np.ndarray) -> None:
        self._env.send(np.asarray(actions, np.int32))

    def recv(self) -> StepResult:
        obs, reward, terminated, truncated, info = self._env.recv()
        obs = channels_last(obs)
        reward = np.asarray(reward, np.float32)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool) & ~terminated
        ended = terminated | truncated
        lives = np.asarray(info["lives"], np.int64)
        life_lost = (lives < self._lives) & ~ended
        self._lives = lives
        final_obs = obs
        if ended.any():
            final_obs = obs.copy()
            final_obs[ended] = channels_last(np.asarray(info["final_obs"])[ended])
        finished = self._tracker.update(reward, ended)
        return StepResult(obs, reward, terminated, truncated, life_lost, final_obs, finished)

    def step(self, actions: np.ndarray) -> StepResult:
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        self._env.close()


def _noop_start_wrapper():
    import gymnasium

    class NoopStart(gymnasium.Wrapper):
        """0..noop_max-1 no-op frames (uniform, from the env's seeded generator) after each
        reset, on the unskipped env: the same draw as ALE's vector env, so both backends
        start episodes alike. (gymnasium's ``AtariPreprocessing`` would draw 1..noop_max.)"""

        def __init__(self, env, noop_max: int):
            super().__init__(env)
            self.noop_max = noop_max
            self.noops = 0  # last draw, for tests

        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            self.noops = int(self.env.unwrapped.np_random.integers(0, self.noop_max))
            for _ in range(self.noops):
                obs, _, terminated, truncated, info = self.env.step(0)
                if terminated or truncated:
                    obs, info = self.env.reset()
            return obs, info

    return NoopStart


class GymAtari:
    """N gymnasium ``ALE/<Game>-v5`` envs with DQN preprocessing, stepped in turn."""

    def __init__(self, game: str, num_envs: int, protocol: Protocol, seed: int):
        import ale_py
        import gymnasium
        from gymnasium import wrappers

        gymnasium.register_envs(ale_py)
        self.game = canonical_game(game)
        self.num_envs = num_envs
        self.protocol = protocol
        self.legal_actions = legal_actions(self.game)
        self._seed = seed
        self._envs = []
        for _ in range(num_envs):
            env = gymnasium.make(
                f"ALE/{self.game}-v5",
                frameskip=1,
                repeat_action_probability=protocol.repeat_action_probability,
                full_action_space=True,
                max_num_frames_per_episode=protocol.max_episode_frames,
            )
            if protocol.noop_max > 0:
                env = _noop_start_wrapper()(env, protocol.noop_max)
            env = wrappers.AtariPreprocessing(
                env,
                noop_max=0,
                frame_skip=FRAMES_PER_STEP,
                screen_size=84,
                terminal_on_life_loss=False,
                grayscale_obs=True,
                scale_obs=False,
            )
            env = wrappers.FrameStackObservation(env, STACK, padding_type="zero")
            self._envs.append(env)
        self._tracker = _EpisodeTracker(num_envs)
        self._lives = np.zeros(num_envs, np.int64)
        self._pending = None

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts new episodes in every env (seeded ``seed``, ``seed + 1``, ...)."""
        if seed is not None:
            self._seed = seed
        observations = []
        for index, env in enumerate(self._envs):
            obs, info = env.reset(seed=int(self._seed) + index)
            self._lives[index] = info["lives"]
            observations.append(np.asarray(obs))
        self._tracker = _EpisodeTracker(self.num_envs)
        return channels_last(np.stack(observations))

    def send(self, actions: np.ndarray) -> None:
        self._pending = np.asarray(actions)

    def recv(self) -> StepResult:
        n = self.num_envs
        obs = np.empty((n, STACK, *FRAME_SHAPE), np.uint8)
        final_obs = np.empty_like(obs)
        reward = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        life_lost = np.zeros(n, bool)
        for index, env in enumerate(self._envs):
            o, r, te, tr, info = env.step(int(self._pending[index]))
            reward[index], terminated[index] = r, te
            truncated[index] = tr and not te
            final_obs[index] = o
            if te or tr:
                o, info = env.reset()
            elif info["lives"] < self._lives[index]:
                life_lost[index] = True
            self._lives[index] = info["lives"]
            obs[index] = o
        obs, final_obs = channels_last(obs), channels_last(final_obs)
        finished = self._tracker.update(reward, terminated | truncated)
        return StepResult(obs, reward, terminated, truncated, life_lost, final_obs, finished)

    def step(self, actions: np.ndarray) -> StepResult:
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        for env in self._envs:
            env.close()


BACKENDS = ("vector", "gym")


def make_env(game: str, num_envs: int, protocol: Protocol | str, seed: int, backend="vector"):
    """Builds a batched game. ``backend`` is 'vector' (fast, default) or 'gym'."""
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    if backend == "vector":
        return VectorAtari(game, num_envs, protocol, seed)
    if backend == "gym":
        return GymAtari(game, num_envs, protocol, seed)
    raise ValueError(f"unknown env backend {backend!r}: choose one of {BACKENDS}")


def random_legal_actions(rng: np.random.Generator, legal: np.ndarray, size: int) -> np.ndarray:
    """Uniform random ALE ids from a game's legal set."""
    return legal[rng.integers(0, len(legal), size=size)].astype(np.int32)
