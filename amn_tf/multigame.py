"""Every game's batched environment and replay memory, stepped together: the acting side
of every agent (one game for the DQN, several for the AMN and the multitask DQN).

One step chooses each game's actions epsilon-greedily (``explore``), sends them (the
emulators then run in their C++ threads while the caller updates the learner), then receives every game's results into its memory. With
``annotate`` (the AMN's ``ExpertOutputs``), the outputs of every new state of every game are
computed in one call per step and stored with the states.
"""

from __future__ import annotations

import numpy as np

from amn_tf import envs, policies, seeds


class GamePlay:
    def __init__(self, games, memories, num_envs, protocol, seed, backend, annotate=None):
        """``annotate``: optional callable, [states of each game] -> [outputs of each game]
        (dicts of per-state arrays) for memories that store outputs."""
        self.games = list(games)
        self.memories = memories
        self.annotate = annotate
        self.num_envs = num_envs
        self.seed = seed
        self.envs = [envs.make_env(g, num_envs, protocol, seeds.emulators(seed, i), backend)
                     for i, g in enumerate(self.games)]
        self.streams = np.arange(num_envs)
        self.observations = []
        # With ``annotate``: each game's Q-values [num_envs, 18] of its current observations (the
        # outputs stored with them), so an expert that plays need not run again; else None.
        self.q_values_now = [None] * len(self.games)
        self.last_returns = {}  # game -> unclipped return of its latest finished episode
        self._actions = []

    def new_episodes(self, step: int, restored: bool = False) -> None:
        """Every env starts an episode seeded by ``step`` (deterministic runs do this at each
        checkpoint, so a resumed run sees what an uninterrupted one saw). ``restored``: the
        memories already hold these first observations (a restored deterministic checkpoint)."""
        self.observations = [env.reset(seed=seeds.emulators(self.seed, index, step))
                             for index, env in enumerate(self.envs)]
        self.q_values_now = [None] * len(self.envs)
        if not restored:
            outputs = self.annotate(self.observations) if self.annotate else [None] * len(self.envs)
            for memory, obs, output in zip(self.memories, self.observations, outputs):
                memory.start_episodes(self.streams, obs, output)
            if self.annotate:
                self.q_values_now = [output["q_values"] for output in outputs]

    def explore(self, rng, epsilon: float, greedy) -> list:
        """Every game's epsilon-greedy ALE ids (``policies.epsilon_greedy``), game by game;
        ``greedy(index)`` gives game ``index``'s greedy ids for its current observations."""
        return [policies.epsilon_greedy(rng, env.legal_actions, epsilon, self.num_envs,
                                        lambda index=index: greedy(index))
                for index, env in enumerate(self.envs)]

    def send(self, actions_per_game) -> None:
        self._actions = [np.asarray(a, np.int32) for a in actions_per_game]
        for env, actions in zip(self.envs, self._actions):
            env.send(actions)

    def recv(self) -> list:
        """Results of the last ``send`` into each game's memory; new episodes recorded.
        Returns ``[(game, return)]`` of the episodes that ended (unclipped returns)."""
        results = [env.recv() for env in self.envs]
        ended = [result.terminated | result.truncated for result in results]
        outputs = [(None, None)] * len(results)
        if self.annotate:  # one call for every game: the next states, then new episodes' first
            annotated = self.annotate([np.concatenate([r.final_obs, r.obs[e]])
                                       for r, e in zip(results, ended)])
            outputs = [({k: v[: self.num_envs] for k, v in a.items()},
                        {k: v[self.num_envs :] for k, v in a.items()}) for a in annotated]
        finished = []
        for index, (result, memory) in enumerate(zip(results, self.memories)):
            memory.append(self.streams, self._actions[index], result.reward, result.terminated,
                          result.truncated, result.life_lost, result.final_obs, outputs[index][0])
            if ended[index].any():
                memory.start_episodes(self.streams[ended[index]], result.obs[ended[index]],
                                      outputs[index][1])
            self.observations[index] = result.obs
            if self.annotate:  # the next states' Q-values; new episodes' first states' where one ended
                q_values = outputs[index][0]["q_values"]
                if ended[index].any():
                    q_values = q_values.copy()
                    q_values[ended[index]] = outputs[index][1]["q_values"]
                self.q_values_now[index] = q_values
            for _, episode_return, _ in result.episode_returns:
                self.last_returns[self.games[index]] = episode_return
                finished.append((self.games[index], episode_return))
        return finished


    def close(self) -> None:
        for env in self.envs:
            env.close()


class EpsilonGreedyPlay:
    """The acting half of a Q-learning agent (``runner.Agent``) that plays in this process:
    ``self.play`` (a ``GamePlay``), ``self.policies`` (one greedy policy per game),
    ``self.rng`` and ``self.config`` (epsilon schedule and envs). Epsilon decays linearly
    with the agent step, one value for every game (they advance in lockstep)."""

    def start(self, step: int, restored: bool) -> None:
        self.play.new_episodes(step, restored)

    def new_episodes(self, step: int) -> None:
        self.play.new_episodes(step)

    def act(self, step: int) -> int:
        c = self.config
        self.epsilon = policies.linear_epsilon(step, c.epsilon_start, c.epsilon_end, c.epsilon_decay_steps)
        observations = self.play.observations
        self.play.send(self.play.explore(self.rng, self.epsilon,
                                         lambda index: self.policies[index](observations[index])))
        return c.env.num_envs

    def observe(self) -> list:
        return self.play.recv()

    def close(self) -> None:
        self.play.close()
