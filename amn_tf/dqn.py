"""DQN: learner, epsilon-greedy actor and the training loop (experts, and later transfer).

Read top to bottom: ``DqnLearner`` (a ``tf.function`` step pulling
batches from a tf.data iterator), ``GreedyPolicy`` / ``EpsilonGreedyActor``, then
``train`` which ties them to the batched env, the replay memory, checkpoints, evaluation
and export.

Actions travel as ALE ids (0..17) everywhere outside the network. A network has K outputs;
``output_actions[k]`` is the ALE id of output k (the legal set for an expert, 0..17 for an
18-way network) and ``output_mask`` marks the outputs legal in the game (all, for experts).
"""

from __future__ import annotations

import contextlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from amn_tf import (
    checkpoints,
    envs,
    evaluation,
    export,
    learning,
    losses,
    networks,
    optimizers,
    replay,
    runtime,
)


def linear_epsilon(step, start, end, decay_steps) -> float:
    fraction = min(1.0, step / decay_steps)
    return start + fraction * (end - start)


def action_tables(legal: np.ndarray, num_outputs: int):
    """(output_actions [K], output_mask [K], action_to_output [18]) for a game."""
    if num_outputs == envs.NUM_ACTIONS:
        output_actions = np.arange(envs.NUM_ACTIONS, dtype=np.int32)
        output_mask = np.zeros(envs.NUM_ACTIONS, bool)
        output_mask[legal] = True
    elif num_outputs == len(legal):
        output_actions = np.asarray(legal, np.int32)
        output_mask = np.ones(num_outputs, bool)
    else:
        raise ValueError(f"a network with {num_outputs} outputs does not fit {len(legal)} legal actions")
    action_to_output = np.zeros(envs.NUM_ACTIONS, np.int32)
    action_to_output[output_actions] = np.arange(num_outputs, dtype=np.int32)
    return output_actions, output_mask, action_to_output


class DqnLearner:
    """Q-learning from replay with a target network.

    target = r_t + discount_t * Q_target(s_t, argmax_{a legal} Q(s_t, a))   (double DQN)
    target = r_t + discount_t * max_{a legal} Q_target(s_t, a)             (DQN)
    loss   = mean Huber(target - Q(s_tm1, a_tm1))   (TD error clipped to [-1, 1] in the gradient)

    The dataset's batches carry the (clipped, possibly n-step) return ``r_t`` and the
    discount to the bootstrap state ``s_t`` (``replay.transition_dataset``).
    """

    def __init__(self, online, target, optimizer, dataset, action_to_output, output_mask,
                 double_dqn=True, jit_compile=False, skip_nonfinite=False, strategy=None,
                 batch_loss="mean"):
        """With ``strategy`` (a tf.distribute strategy), build the networks, the optimizer and
        this learner inside ``strategy.scope()``; each replica takes a slice of the batch.
        ``batch_loss`` 'sum' sums the loss over the batch (the authors' gradient scale)."""
        self.online = online
        self.target = target
        self.optimizer = optimizer
        self._action_to_output = tf.constant(action_to_output, tf.int32)
        self._output_mask = tf.constant(output_mask, tf.bool)
        self._double = double_dqn
        self._batch_loss = batch_loss
        self.skip_nonfinite = skip_nonfinite
        self.updates = learning.counter("updates")
        self.skipped = learning.counter("skipped_updates")
        optimizer.build(online.trainable_variables)
        self._step = learning.Stepper(self.compute, online.trainable_variables, optimizer,
                                      self.updates, self.skipped, dataset, strategy, jit_compile)
        self._update = tf.function(self._step.run)  # one update on a given batch

    def targets(self, batch):
        """Inputs of the TD target, computed outside the gradient tape."""
        q_t_target, _ = self.target(batch["s_t"], training=False)
        q_t_online = self.online(batch["s_t"], training=False)[0] if self._double else None
        return batch["r_t"], q_t_target, q_t_online

    def loss(self, batch, targets=None):
        r_t, q_t_target, q_t_online = targets or self.targets(batch)
        a_tm1 = tf.gather(self._action_to_output, batch["a_tm1"])
        q_tm1, _ = self.online(batch["s_tm1"], training=True)
        return losses.td_loss(q_tm1, a_tm1, r_t, batch["discount_t"], q_t_target,
                              q_t_online, self._output_mask, reduction=self._batch_loss)

    def compute(self, batch):
        """Loss (replica-scaled), gradients and metrics of one batch."""
        variables = self.online.trainable_variables
        targets = self.targets(batch)
        with tf.GradientTape() as tape:
            loss = self.loss(batch, targets)
            if self._batch_loss == "mean":  # each replica's mean weighs its share; sums just add
                loss *= learning.replica_scale(tf.shape(batch["a_tm1"])[0])
        return loss, tape.gradient(loss, variables), {"td_loss": loss}

    def step(self) -> dict:
        return learning.check_applied(self._step(), self.updates, self.skip_nonfinite, "td_loss",
                                      "learning_rate")

    def update_target(self) -> None:
        for target_variable, variable in zip(self.target.variables, self.online.variables):
            target_variable.assign(variable)


class GreedyPolicy:
    """Batched greedy ALE ids from a network, masked to the legal outputs."""

    def __init__(self, network, output_actions, output_mask):
        self._network = network
        self._output_actions = tf.constant(output_actions, tf.int32)
        self._output_mask = tf.constant(output_mask, tf.bool)

    @tf.function(input_signature=[tf.TensorSpec([None, *envs.OBSERVATION_SHAPE], tf.uint8)])
    def _greedy(self, frames):
        outputs, _ = self._network(frames, training=False)
        return tf.gather(self._output_actions, losses.masked_argmax(outputs, self._output_mask))

    def __call__(self, frames) -> np.ndarray:
        return self._greedy(tf.convert_to_tensor(frames)).numpy()


class EpsilonGreedyActor:
    def __init__(self, policy, legal_actions, rng: np.random.Generator):
        self.policy = policy
        self.legal = np.asarray(legal_actions, np.int32)
        self.rng = rng

    def select(self, frames, epsilon: float) -> np.ndarray:
        n = len(frames)
        explore = self.rng.random(n) < epsilon
        random_actions = envs.random_legal_actions(self.rng, self.legal, n)
        if explore.all():
            return random_actions
        return np.where(explore, random_actions, self.policy(frames)).astype(np.int32)


@runtime.releases_run_dirs
def train(config, network=None, export_kind="experts", export_name=None) -> dict:
    """Trains a DQN on ``config.game`` (``--mode=dqn``). Resumes from ``config.run_dir``.

    ``network`` (optional) is a prebuilt online network (transfer initialisation).
    Returns a summary dict (final evaluation, export path).
    """
    game = config.game
    legal = envs.legal_actions(game)
    run_dir = config.run_dir
    runtime.lock_run_dir(run_dir)  # already held when prepare_run_dir made it (main, fan-out)
    runtime.set_seeds(config.seed, config.deterministic)
    runtime.set_precision(config.precision)

    strategy = learning.make_strategy(config.distribution, config.devices)
    env = envs.make_env(game, config.env.num_envs, config.env.protocol, config.seed, config.env.backend)
    memory = replay.ReplayMemory(config.replay_capacity, config.env.num_envs, seed=config.seed)
    life_loss_terminal = envs.get_protocol(config.env.protocol).life_loss_terminal
    dataset = replay.transition_dataset(memory, config.batch_size, config.gamma, life_loss_terminal,
                                        prefetch=0 if config.deterministic else 2,
                                        n_step=config.n_step, reward_clip=config.reward_clip)
    with strategy.scope() if strategy else contextlib.nullcontext():
        if network is None:
            online = networks.nature_dqn(len(legal), name="online")
        else:  # transfer: the given network's architecture and weights, built in this scope
            online = keras.models.clone_model(network)
            online.set_weights(network.get_weights())
        target = keras.models.clone_model(online)
        target.set_weights(online.get_weights())
        output_actions, output_mask, action_to_output = action_tables(legal, online.outputs[0].shape[-1])
        optimizer = optimizers.make_optimizer(config.optimizer, config.learning_rate,
                                              config.adam_epsilon, config.batch_size)
        learner = DqnLearner(online, target, optimizer, dataset, action_to_output, output_mask,
                             config.double_dqn, config.jit_compile,
                             config.skip_nonfinite, strategy, config.batch_loss)
    rng = np.random.default_rng(config.seed)
    actor = EpsilonGreedyActor(GreedyPolicy(online, output_actions, output_mask), legal, rng)

    manager = checkpoints.CheckpointManager(os.path.join(run_dir, "checkpoints"))
    trackables = {"online": online, "target": target, "optimizer": optimizer,
                  "updates": learner.updates, "skipped": learner.skipped}
    # A deterministic run keeps its replay in every checkpoint and restarts its episodes at
    # every checkpoint (seeded by the step), so a resumed run replays exactly what an
    # uninterrupted one does.
    save_replay = config.save_replay or config.deterministic
    state = manager.restore(trackables, [memory] if save_replay else ())
    eval_path = os.path.join(run_dir, "eval.jsonl")
    step = 0
    if state:
        step = int(state["step"])
        rng.bit_generator.state = state["actor_rng"]
        memory.rng.bit_generator.state = state["replay_rng"]
        print(f"[dqn {game}] resumed from {state['path']} at frame {step * 4:,}"
              + ("" if state["replay_restored"] else " (replay refills before learning resumes)"),
              flush=True)
    # Keep exactly the evaluations and TensorBoard events made up to the restored checkpoint.
    history = [r for r in runtime.read_jsonl(eval_path) if r["step"] <= step]
    runtime.rewrite_jsonl(eval_path, history)
    runtime.trim_tensorboard(os.path.join(run_dir, "tensorboard"), step * envs.FRAMES_PER_STEP)
    summary = {"game": game, "run_dir": run_dir}
    finished, state = runtime.finished_or_extended(state, step, config.training_steps, f"dqn {game}")
    if finished:
        summary.update(state["summary"])
        print(f"[dqn {game}] run already finished: {summary.get('export')} (a larger "
              "--training_steps trains it further)")
        env.close()
        return summary

    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
    progress = runtime.Progress(f"dqn {game}", config.training_steps, step)
    profiler = runtime.StepProfiler(config.profile_steps, os.path.join(run_dir, "tensorboard"),
                                    int(learner.updates.numpy()))
    refill_until = step + (0 if (state and state["replay_restored"]) or not state else config.learning_starts)
    learning_starts = max(config.learning_starts, refill_until)

    def save(finished=False, extra=None):
        writer.flush()  # every event up to this step is on disk before the checkpoint
        payload = {"step": step, "actor_rng": rng.bit_generator.state,
                   "replay_rng": memory.rng.bit_generator.state, "replay_saved": save_replay,
                   "update_credit": update_credit, "finished": finished, "summary": extra or {}}
        manager.save(step, trackables, payload, [memory] if save_replay else ())

    def run_evaluation():
        result = evaluation.play(actor.policy, game, config.env.protocol,
                                 config.evaluation.episodes, config.evaluation.epsilon,
                                 config.evaluation.num_envs, config.evaluation.max_steps,
                                 config.seed + 1 + len(history), config.env.backend)
        record = {"step": step, "frames": step * envs.FRAMES_PER_STEP, **result.as_dict()}
        history.append(record)
        runtime.append_jsonl(eval_path, record)
        with writer.as_default(step=step * envs.FRAMES_PER_STEP):
            tf.summary.scalar("eval/mean_return", result.mean)
            tf.summary.scalar("eval/max_return", result.max)
        return result

    obs = env.reset(seed=config.seed + step)
    streams = np.arange(env.num_envs)
    if not (state and state["replay_restored"] and config.deterministic):
        memory.start_episodes(streams, obs)  # (a deterministic checkpoint holds these already)
    update_credit = float(state.get("update_credit", 0.0)) if state else 0.0
    last_return, last_loss = None, float("nan")
    with runtime.StopSignal() as stop:
        while step < config.training_steps and not stop.requested:
            epsilon = linear_epsilon(step, config.epsilon_start, config.epsilon_end,
                                     config.epsilon_decay_steps)
            actions = actor.select(obs, epsilon)
            env.send(actions)  # emulators step in C++ threads while the learner updates
            if step >= learning_starts:
                update_credit += env.num_envs / config.update_period
                while update_credit >= 1.0:
                    metrics = profiler.step(learner.step)
                    update_credit -= 1.0
                    last_loss = float(metrics["td_loss"])
            result = env.recv()
            memory.append(streams, actions, result.reward, result.terminated, result.truncated,
                          result.life_lost, result.final_obs)
            ended = result.terminated | result.truncated
            if ended.any():
                memory.start_episodes(streams[ended], result.obs[ended])
            obs = result.obs
            before, step = step, step + env.num_envs
            for _, episode_return, _ in result.episode_returns:
                last_return = episode_return
                with writer.as_default(step=step * envs.FRAMES_PER_STEP):
                    tf.summary.scalar("charts/episodic_return", episode_return)
            if runtime.crossed(before, step, config.target_update_period):
                learner.update_target()
            if runtime.crossed(before, step, config.log_period):
                latest = history[-1]["mean"] if history else None
                fps = progress.print(step, f"eval {latest if latest is None else round(latest, 1)} | "
                                     f"last episode {last_return} | loss {last_loss:.4f} | eps {epsilon:.3f}")
                with writer.as_default(step=step * envs.FRAMES_PER_STEP):
                    tf.summary.scalar("charts/SPS", fps / envs.FRAMES_PER_STEP)
                    tf.summary.scalar("charts/frames_per_second", fps)
                    tf.summary.scalar("charts/epsilon", epsilon)
                    tf.summary.scalar("losses/td_loss", last_loss)
            if runtime.crossed(before, step, config.eval_period) and step < config.training_steps:
                result_eval = run_evaluation()
                print(f"[dqn {game}] eval at frame {step * 4:,}: {result_eval.line()}", flush=True)
            if runtime.crossed(before, step, config.checkpoint_period):
                if config.deterministic:  # new episodes from a seed both runs share
                    obs = env.reset(seed=config.seed + step)
                    memory.start_episodes(streams, obs)
                save()
    profiler.finish()
    env.close()
    if stop.requested:
        save()
        writer.flush()
        print(f"[dqn {game}] stopped at frame {step * 4:,}; run the same command to resume")
        summary["stopped"] = True
        return summary
    if history and history[-1]["step"] == step:  # a restart after the final evaluation
        final = evaluation.EvalResult.from_dict(history[-1])
    else:
        final = run_evaluation()
    print(f"[dqn {game}] final eval: {final.line()}", flush=True)
    provenance = {"frames_trained": step * envs.FRAMES_PER_STEP, "agent_steps": step,
                  "final_eval": final.as_dict(), "run_dir": os.path.abspath(run_dir),
                  "flags": _read_flags(run_dir)}
    # The export path is fixed in a checkpoint before exporting, so a restart after a crash
    # during or after the export finishes that same version instead of adding another.
    base = os.path.join(config.export_dir, export_kind, export_name or game)
    path = export.run_export_path(state, base)
    save(extra={"pending_export": path})
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        export.export_expert(online, game, path, provenance, config.env.protocol,
                             kind="expert" if export_kind == "experts" else export_kind)
    summary.update({"export": path, "final_eval": final.as_dict(), "frames": step * 4})
    save(finished=True, extra=summary)
    writer.flush()
    logging.info("exported %s", path)
    print(f"[dqn {game}] SavedModel: {path}\n[dqn {game}] TensorBoard: tensorboard --logdir "
          f"{os.path.join(run_dir, 'tensorboard')}", flush=True)
    return summary


def _read_flags(run_dir):
    import json

    try:
        with open(os.path.join(run_dir, "flags.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}
