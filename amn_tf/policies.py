"""How agents choose actions: greedy policies of a network (masked to a game's legal
outputs), epsilon-greedy exploration over the legal set, the linear epsilon schedule, and
the tables between a network's outputs and ALE ids.

Actions travel as ALE ids (0..17) everywhere outside the network. A network has K outputs;
``output_actions[k]`` is the ALE id of output k (the legal set for an expert, 0..17 for an
18-way network) and ``output_mask`` marks the outputs legal in the game (all, for experts).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from amn_tf import envs, losses


def linear_epsilon(step, start, end, decay_steps) -> float:
    fraction = min(1.0, step / decay_steps)
    return start + fraction * (end - start)


def epsilon_greedy(rng: np.random.Generator, legal, epsilon: float, count: int, greedy) -> np.ndarray:
    """``count`` ALE ids: each a uniformly random legal action with probability ``epsilon``,
    else the greedy one; ``greedy()`` gives the greedy ids and is not called when every
    choice explores. Draws exploration first, then the random actions (one stream order
    for every agent)."""
    explore = rng.random(count) < epsilon
    random_actions = envs.random_legal_actions(rng, np.asarray(legal, np.int32), count)
    if explore.all():
        return random_actions
    return np.where(explore, random_actions, greedy()).astype(np.int32)


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


def amn_policy(amn, mask) -> GreedyPolicy:
    """Greedy ALE ids of an 18-way network (an AMN) restricted to ``mask``'s actions."""
    return GreedyPolicy(amn, np.arange(envs.NUM_ACTIONS, dtype=np.int32), mask)


class HeadPolicies:
    """Greedy ALE ids for each game through a shared torso and that game's head.

    One ``tf.function`` for every game (the head chosen by ``tf.switch_case`` on the game's
    index), traced once: a per-game policy object would trace the same method once per game,
    which TensorFlow reports as excessive retracing.
    """

    def __init__(self, torso, heads, legal_by_game):
        self._torso, self._heads = torso, list(heads)
        self._legal = [tf.constant(legal, tf.int32) for legal in legal_by_game]
        self.per_game = [functools.partial(self.__call__, game_index=i) for i in range(len(self._heads))]

    @tf.function(input_signature=[tf.TensorSpec([None, *envs.OBSERVATION_SHAPE], tf.uint8),
                                  tf.TensorSpec([], tf.int32)])
    def _greedy(self, frames, game_index):
        shared = self._torso(frames, training=False)

        def head_actions(head, legal):
            q_values, _ = head(shared, training=False)
            return tf.gather(legal, tf.argmax(q_values, axis=-1, output_type=tf.int32))

        return tf.switch_case(game_index, [functools.partial(head_actions, head, legal)
                                           for head, legal in zip(self._heads, self._legal)])

    def __call__(self, frames, game_index: int) -> np.ndarray:
        return self._greedy(tf.convert_to_tensor(frames), tf.constant(game_index, tf.int32)).numpy()
