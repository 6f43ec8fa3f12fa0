"""Many actors, one learner: actor processes play every game with a copy of the AMN and
feed the learner's per-game replay memories.

Each ``ActorWorker`` owns ``num_envs`` batched emulators per game and a copy of the AMN.
``play(weights, steps)`` loads the weights it is given (when new), plays ``steps`` vector
steps epsilon-greedily on every game and returns a chunk: what the learner's memories
need to record those steps (actions, rewards, end flags and the newest frame of each
step, plus the full first observation of each new episode). The learner owns one replay
stream per (actor, env); ``ingest`` writes a chunk into those streams in the order the
steps happened, so the memory holds what an in-process run would have recorded (with the
AMN's expert outputs of every new state, computed in the learner process per chunk).

``RemoteActors`` runs the workers as Ray actors (``--num_actors`` with ``--ray_address``):
each keeps one ``play`` call in flight; the learner takes chunks as they arrive, updates,
and pushes new weights every ``--actor_sync_period`` updates. A learner that is slower than
its actors simply leaves them waiting for their next call, so the replay ratio stays the
configured one.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import tensorflow as tf

from amn_tf import envs, losses, rundirs, seeds


class MultitaskPolicy:
    """Greedy ALE ids of the AMN for states of several games in one forward pass."""

    def __init__(self, amn, masks):
        self._amn = amn
        self._masks = tf.constant(masks, tf.bool)

    @tf.function(input_signature=[tf.TensorSpec([None, *envs.OBSERVATION_SHAPE], tf.uint8),
                                  tf.TensorSpec([None], tf.int32)])
    def _greedy(self, frames, game_index):
        logits, _ = self._amn(frames, training=False)
        return losses.masked_argmax(logits, tf.gather(self._masks, game_index))

    def __call__(self, frames, game_index) -> np.ndarray:
        return self._greedy(tf.convert_to_tensor(frames), tf.convert_to_tensor(game_index)).numpy()


class ActorWorker:
    """Batched envs for every game and a local AMN; plain class, wrapped by Ray as an actor."""

    def __init__(self, games, num_envs, protocol, backend, network, epsilon, seed, threads=0):
        from amn_tf import networks

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        self.games = list(games)
        self.num_envs = num_envs
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)
        self.envs = [envs.make_env(g, num_envs, protocol, seed + 1000 * i, backend)
                     for i, g in enumerate(self.games)]
        self.amn = networks.build_network(network, envs.NUM_ACTIONS, name="amn")
        masks = np.stack([envs.legal_mask(g) for g in self.games])
        self.policy = MultitaskPolicy(self.amn, masks)
        self.game_of_env = np.repeat(np.arange(len(self.games), dtype=np.int32), num_envs)
        self.observations = None
        self.weights_version = -1

    def ready(self) -> int:
        """Traces the policy on one blank state per env, so that the first ``play`` call of
        every worker costs what the later ones do; returns the number of envs."""
        blank = np.zeros((len(self.game_of_env), *envs.OBSERVATION_SHAPE), np.uint8)
        self.policy(blank, self.game_of_env)
        return len(self.game_of_env)

    def set_weights(self, weights, version) -> None:
        if version != self.weights_version:
            self.amn.set_weights(weights)
            self.weights_version = version

    def play(self, weights, version, steps) -> dict:
        """``steps`` vector steps of every game; returns the chunk ``ingest`` records."""
        self.set_weights(weights, version)
        chunk = {"games": [], "version": version, "steps": steps}
        initial = self.observations is None
        if initial:
            self.observations = [env.reset() for env in self.envs]
        n = self.num_envs
        records = []
        for index in range(len(self.games)):
            records.append({
                "initial": self.observations[index].copy() if initial else None,
                "actions": np.zeros((steps, n), np.int32),
                "rewards": np.zeros((steps, n), np.float32),
                "terminated": np.zeros((steps, n), bool),
                "truncated": np.zeros((steps, n), bool),
                "life_lost": np.zeros((steps, n), bool),
                "frames": np.zeros((steps, n, *envs.FRAME_SHAPE), np.uint8),
                "starts": [],  # (step, env indices, first observations) after that step
                "returns": [],
            })
        for t in range(steps):
            greedy = self.policy(np.concatenate(self.observations), self.game_of_env).reshape(
                len(self.games), n)
            actions = []
            for index, env in enumerate(self.envs):
                explore = self.rng.random(n) < self.epsilon
                random_actions = envs.random_legal_actions(self.rng, env.legal_actions, n)
                actions.append(np.where(explore, random_actions, greedy[index]).astype(np.int32))
                env.send(actions[-1])
            for index, env in enumerate(self.envs):
                result = env.recv()
                record = records[index]
                record["actions"][t] = actions[index]
                record["rewards"][t] = result.reward
                record["terminated"][t] = result.terminated
                record["truncated"][t] = result.truncated
                record["life_lost"][t] = result.life_lost
                record["frames"][t] = result.final_obs[..., -1]
                ended = np.flatnonzero(result.terminated | result.truncated)
                if ended.size:
                    record["starts"].append((t, ended, result.obs[ended].copy()))
                record["returns"].extend(float(r) for _, r, _ in result.episode_returns)
                self.observations[index] = result.obs
        chunk["games"] = records
        return chunk

    def close(self) -> None:
        for env in self.envs:
            env.close()


def chunk_states(record, steps: int, before: np.ndarray):
    """Each step's next state ``[steps, n, 84, 84, 4]`` in one game's chunk, rebuilt from its
    newest frames the way the memory rebuilds them: the state before the step shifted by a
    frame, the step's frame last (after an episode ended, the state before the next step is
    the new episode's first observation). ``before`` [n, 84, 84, 4]: the states before the
    chunk (ignored when the chunk begins with its ``initial`` observation)."""
    current = record["initial"] if record["initial"] is not None else before
    starts = {t: (ended, observations) for t, ended, observations in record["starts"]}
    next_obs = np.empty((steps, *current.shape), np.uint8)
    for t in range(steps):
        next_obs[t, ..., :-1] = current[..., 1:]
        next_obs[t, ..., -1] = record["frames"][t]
        current = next_obs[t]
        if t in starts:
            ended, observations = starts[t]
            current = current.copy()
            current[ended] = observations
    return next_obs


class _Slices:
    """Consecutive slices of per-state outputs (dicts of arrays), from ``start`` on; None
    without outputs."""

    def __init__(self, outputs, start: int = 0):
        self.outputs, self.at = outputs, start

    def take(self, count: int):
        if self.outputs is None:
            return None
        self.at += count
        return {name: value[self.at - count : self.at] for name, value in self.outputs.items()}


def ingest(chunk, memories, streams, annotate=None) -> None:
    """Writes an actor's chunk into the learner's memories (one per game) on ``streams``
    (that actor's stream ids), step by step in the order the steps happened.

    ``annotate`` (memories that store outputs; see ``multigame.GamePlay``): the outputs of
    every state the chunk writes, rebuilt here (``chunk_states``), computed in one call for
    all games of the chunk before anything is written. Per game the states are, in order:
    the first observations (a worker's first chunk), each step's next states, and the first
    observation of each episode started in the chunk."""
    streams = np.asarray(streams, np.int64)
    steps, n = chunk["steps"], len(streams)
    records = chunk["games"]
    next_obs, outputs = [None] * len(records), [None] * len(records)
    if annotate is not None:
        states = []
        for index, (memory, record) in enumerate(zip(memories, records)):
            before = memory.latest_observations(streams) if record["initial"] is None else None
            next_obs[index] = chunk_states(record, steps, before)
            states.append(np.concatenate(
                ([] if record["initial"] is None else [record["initial"]])
                + [next_obs[index].reshape(-1, *envs.OBSERVATION_SHAPE)]
                + [observations for _, _, observations in record["starts"]]))
        outputs = annotate(states)
    for memory, record, stacks, annotated in zip(memories, records, next_obs, outputs):
        written = _Slices(annotated)
        if record["initial"] is not None:
            memory.start_episodes(streams, record["initial"], written.take(n))
        started = _Slices(annotated, written.at + steps * n)
        starts = {t: (ended, observations) for t, ended, observations in record["starts"]}
        for t in range(steps):
            memory.append(streams, record["actions"][t], record["rewards"][t],
                          record["terminated"][t], record["truncated"][t], record["life_lost"][t],
                          record["frames"][t][..., None] if stacks is None else stacks[t],
                          written.take(n))
            if t in starts:
                ended, observations = starts[t]
                memory.start_episodes(streams[ended], observations, started.take(len(ended)))


class _ChunkFeed:
    """What both kinds of actors share on the learner's side: each actor's replay streams, the
    chunks recorded into the memories, and the episodes those chunks ended."""

    def _feed_init(self, games, memories, num_envs, chunk_steps, annotate) -> None:
        self.annotate = annotate  # see ``ingest``
        self.games = list(games)
        self.memories = memories
        self.num_envs = num_envs
        self.chunk_steps = chunk_steps
        self.last_returns = {}
        self._finished = []  # (game, unclipped return) of the episodes ended since take_finished
        self.pending = {}
        self.version = 0

    def streams_of(self, k: int) -> np.ndarray:
        return np.arange(k * self.num_envs, (k + 1) * self.num_envs)

    def take_finished(self) -> list:
        """``[(game, return)]`` of the episodes the chunks collected since the last call ended
        (unclipped returns), for the run's progress lines and TensorBoard."""
        finished, self._finished = self._finished, []
        return finished

    def _record(self, k: int, chunk) -> int:
        """Actor ``k``'s chunk into the memories; returns the agent steps per game it added."""
        ingest(chunk, self.memories, self.streams_of(k), self.annotate)
        for game, record in zip(self.games, chunk["games"]):
            self._finished.extend((game, episode_return) for episode_return in record["returns"])
            if record["returns"]:
                self.last_returns[game] = record["returns"][-1]
        return chunk["steps"] * self.num_envs


class ThreadActors(_ChunkFeed):
    """``num_actors`` ``ActorWorker``s playing in background threads of this process, with the
    interface of ``RemoteActors`` (``start``, ``set_weights``, ``collect``, ``close``): each
    keeps one ``play`` call in flight while the learner ingests the previous chunk and updates,
    so acting (the emulators, the AMN choosing actions) overlaps the experts' outputs and the
    learner's steps. TensorFlow and the emulators release the GIL while they compute. Each
    worker has its own copy of the AMN, loaded with the weights it is given when they change
    (as a Ray actor's), so the learner's updates never race the actors' forward passes."""

    def __init__(self, games, memories, num_envs, protocol, backend, network, epsilon, seed,
                 num_actors, chunk_steps, annotate=None):
        self._feed_init(games, memories, num_envs, chunk_steps, annotate)
        self.workers = [ActorWorker(self.games, num_envs, protocol, backend, network, epsilon,
                                    seeds.actor(seed, k)) for k in range(num_actors)]
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=num_actors,
                                                          thread_name_prefix="amn-actor")
        self.weights = None

    def set_weights(self, weights) -> None:
        self.weights = weights
        self.version += 1

    def start(self, weights) -> None:
        for worker in self.workers:
            worker.ready()
        self.set_weights(weights)
        for k, worker in enumerate(self.workers):
            self._launch(k, worker)

    def _launch(self, k, worker) -> None:
        self.pending[self.pool.submit(worker.play, self.weights, self.version, self.chunk_steps)] = (k, worker)

    def collect(self) -> int:
        """Waits for the next chunk, records it, relaunches its actor; returns the agent steps
        per game it added."""
        done, _ = concurrent.futures.wait(list(self.pending), return_when=concurrent.futures.FIRST_COMPLETED)
        future = next(iter(done))
        k, worker = self.pending.pop(future)
        chunk = future.result()  # an actor's error is raised here, in the learner's thread
        added = self._record(k, chunk)
        self._launch(k, worker)
        return added

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)
        self.pending = {}
        for worker in self.workers:
            worker.close()


class RemoteActors(_ChunkFeed):
    """``num_actors`` Ray actors playing for one learner (see the module docstring)."""

    def __init__(self, ray, games, memories, num_envs, protocol, backend, network, epsilon,
                 seed, num_actors, chunk_steps, cpus_per_actor, gpus_per_actor=0.0, annotate=None):
        self.ray = ray
        self._feed_init(games, memories, num_envs, chunk_steps, annotate)
        cls = ray.remote(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor, max_restarts=0)(ActorWorker)
        threads = max(1, int(cpus_per_actor)) if cpus_per_actor else 0
        self.workers = [cls.remote(self.games, num_envs, protocol, backend, network, epsilon,
                                   seeds.actor(seed, k), threads) for k in range(num_actors)]
        self.weights_ref = None

    def set_weights(self, weights) -> None:
        """New weights for every later ``play`` call (the workers load them once each)."""
        self.weights_ref = self.ray.put(weights)
        self.version += 1

    def start(self, weights) -> None:
        """Waits until every worker has built its emulators and traced its policy, then sets
        them all playing. Without that barrier a worker that starts slowly (TensorFlow import
        and tracing on a busy machine) can be outpaced by the others for the whole of a short
        run, and its streams stay empty."""
        try:
            self.ray.get([worker.ready.remote() for worker in self.workers])
        except self.ray.exceptions.RayError as error:
            raise self._failed("an actor failed to start", error) from None
        self.set_weights(weights)
        for k, worker in enumerate(self.workers):
            self._launch(k, worker)

    @staticmethod
    def _failed(what: str, error) -> Exception:
        """One line for a Ray actor failure: what happened, Ray's first line, and the fix."""

        return rundirs.RunError(f"{what}: {str(error).splitlines()[0]}; rerun the same command "
                                "to resume from the last checkpoint")

    def _launch(self, k, worker) -> None:
        ref = worker.play.remote(self.weights_ref, self.version, self.chunk_steps)
        self.pending[ref] = (k, worker)

    def collect(self) -> int:
        """Waits for the next chunk, records it, relaunches its actor; returns the agent steps
        per game it added."""
        try:
            [ready], _ = self.ray.wait(list(self.pending), num_returns=1)
            chunk = self.ray.get(ready)
        except self.ray.exceptions.RayError as error:
            raise self._failed("an actor died", error) from None
        k, worker = self.pending.pop(ready)
        added = self._record(k, chunk)
        self._launch(k, worker)
        return added


    def close(self) -> None:
        for worker in self.workers:
            try:
                self.ray.kill(worker)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
