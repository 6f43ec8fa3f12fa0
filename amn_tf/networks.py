"""Keras builders: the Nature DQN, the authors' large AMN, and feature regressors.

Every network takes uint8 frames ``[B, 84, 84, 4]`` (scaled to [0, 1] inside the model)
and returns ``(outputs, features)``: one output per action and the post-ReLU activations
of the last hidden layer (what feature regression matches).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from amn_tf import envs

NETWORKS = ("small", "large")
FEATURE_LAYER = "features"
OUTPUT_LAYER = "outputs"


def _torso(frames, convolutions, hidden_sizes):
    x = layers.Rescaling(1.0 / 255.0, name="scale")(frames)
    for index, (filters, kernel, stride) in enumerate(convolutions):
        x = layers.Conv2D(filters, kernel, stride, activation="relu", name=f"conv{index + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    for index, size in enumerate(hidden_sizes):
        last = index == len(hidden_sizes) - 1
        name = FEATURE_LAYER if last else f"hidden{index + 1}"
        x = layers.Dense(size, activation="relu", name=name)(x)
    return x


# (filters, kernel, stride) per convolution; sizes of the fully connected layers.
ARCHITECTURES = {
    # Nature DQN (Mnih et al. 2015): experts and the small AMN.
    "small": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], [512]),
    # The authors' transfer AMN: conv 256@8x8/4, 512@4x4/2, 512@3x3/1, 512@3x3/1, FC 2048, FC 1024.
    "large": ([(256, 8, 4), (512, 4, 2), (512, 3, 1), (512, 3, 1)], [2048, 1024]),
}


@keras.saving.register_keras_serializable(package="amn_tf")
class DuelingCombine(layers.Layer):
    """Q = V + A - mean(A) (Wang et al. 2016, "Dueling Network Architectures") from
    ``[value [B, 1], advantages [B, n]]``."""

    def call(self, inputs):
        value, advantages = inputs
        return value + advantages - ops.mean(advantages, axis=-1, keepdims=True)


def build_network(kind: str, num_outputs: int, name: str = "network",
                  dueling: bool = False) -> keras.Model:
    """Builds ``kind`` ('small' or 'large') with ``num_outputs`` linear outputs. ``dueling``:
    the outputs are a value and ``num_outputs`` advantages, both linear in the same last hidden
    layer, combined as Q = V + A - mean(A). (Wang et al. give each its own hidden layer; one
    shared layer keeps the features an AMN regresses the same shape with or without it.)"""
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown network {kind!r}: choose one of {sorted(ARCHITECTURES)}")
    convolutions, hidden = ARCHITECTURES[kind]
    frames = keras.Input(envs.OBSERVATION_SHAPE, dtype="uint8", name="frames")
    features = _torso(frames, convolutions, hidden)
    if dueling:
        value = layers.Dense(1, name="value", dtype="float32")(features)
        advantages = layers.Dense(num_outputs, name="advantages", dtype="float32")(features)
        outputs = DuelingCombine(name=OUTPUT_LAYER, dtype="float32")([value, advantages])
    else:
        outputs = layers.Dense(num_outputs, name=OUTPUT_LAYER, dtype="float32")(features)
    # float32 features whatever the compute policy (mixed bfloat16 keeps outputs in float32).
    features = layers.Identity(dtype="float32", name="features_out")(features)
    return keras.Model(frames, [outputs, features], name=name)


def nature_dqn(num_outputs: int, name: str = "dqn", dueling: bool = False) -> keras.Model:
    return build_network("small", num_outputs, name, dueling)


def feature_size(model: keras.Model) -> int:
    return int(model.get_layer(FEATURE_LAYER).units)


def feature_regressors(input_size: int, output_sizes: list) -> list:
    """One linear map ``f_i`` per game (AMN hidden -> expert hidden, no nonlinearity)."""
    regressors = []
    for index, output_size in enumerate(output_sizes):
        regressor = layers.Dense(output_size, name=f"feature_regressor_{index}", dtype="float32")
        regressor.build((None, input_size))
        regressors.append(regressor)
    return regressors


def _float32_config(value):
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return {**value, "config": {**value.get("config", {}), "name": "float32"}}
        return {key: _float32_config(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_float32_config(item) for item in value]
    if value == "mixed_bfloat16" or value == "mixed_float16":
        return "float32"
    return value


def float32_copy(model: keras.Model) -> keras.Model:
    """The same network computing in float32, with the same weights (for export: portable
    SavedModels whatever precision training used)."""
    config = _float32_config(model.get_config())
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


MULTITASK_NETWORKS = ("mdqn", "mcdqn")


def multitask_dqn(kind: str, num_actions: list, name: str = "multitask") -> tuple:
    """The paper's Appendix C baselines as (torso, heads).

    * 'mdqn': one Nature DQN shared by all games (convolutions and FC 512), a separate
      output layer per game over that game's legal actions;
    * 'mcdqn': shared convolutions, a separate FC 512 and output layer per game.
    Each head maps the torso's output to (q_values [B, n_i], features [B, 512]).
    """
    if kind not in MULTITASK_NETWORKS:
        raise ValueError(f"unknown multitask network {kind!r}: choose one of {MULTITASK_NETWORKS}")
    convolutions, hidden = ARCHITECTURES["small"]
    frames = keras.Input(envs.OBSERVATION_SHAPE, dtype="uint8", name="frames")
    shared = _torso(frames, convolutions, hidden if kind == "mdqn" else [])
    torso = keras.Model(frames, shared, name=f"{name}_torso")
    heads = []
    for index, count in enumerate(num_actions):
        inputs = keras.Input(shared.shape[1:], name=f"shared_{index}")
        features = inputs
        if kind == "mcdqn":
            features = layers.Dense(hidden[-1], activation="relu", name=f"features_{index}")(inputs)
        outputs = layers.Dense(count, name=f"outputs_{index}", dtype="float32")(features)
        features = layers.Identity(dtype="float32", name=f"features_out_{index}")(features)
        heads.append(keras.Model(inputs, [outputs, features], name=f"{name}_head_{index}"))
    return torso, heads
