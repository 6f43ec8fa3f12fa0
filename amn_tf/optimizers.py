"""Optimizers of the learners: Keras Adam, the authors' RMSProp, and the authors' Adam.

The authors' Lua code applies its optimizers to gradients *summed* over the minibatch.
Their RMSProp is Keras' centered RMSprop (rho 0.95, epsilon 0.01 inside the root); with
``--batch_loss=sum`` the DQN's gradient has their scale. Their AMN optimizer is an Adam
variant, ``AuthorsAdam`` below.
"""

from __future__ import annotations

import keras
from keras import ops


class AuthorsAdam(keras.optimizers.Optimizer):
    """The Adam variant of the authors' AMN code, without bias correction:

        m = beta_1 m + (1 - beta_1) g
        v = beta_2 v + (1 - beta_2) g^2
        w = w - lr m / sqrt(v + epsilon)          (epsilon inside the root)

    with beta_1 = beta_2 = 0.95 and epsilon 0.01 on a gradient summed over the batch. This
    project's losses average over the batch (g / B), so ``batch_size`` B rescales epsilon to
    epsilon / B^2, which gives exactly the authors' step: m and sqrt(v) both shrink by B.
    """

    def __init__(self, learning_rate=2.5e-4, beta_1=0.95, beta_2=0.95, epsilon=0.01,
                 batch_size=1, name="authors_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.batch_size = batch_size

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign(m, ops.add(ops.multiply(self.beta_1, m), ops.multiply(1 - self.beta_1, gradient)))
        self.assign(v, ops.add(ops.multiply(self.beta_2, v),
                               ops.multiply(1 - self.beta_2, ops.square(gradient))))
        epsilon = self.epsilon / float(self.batch_size) ** 2
        self.assign_sub(variable, ops.divide(ops.multiply(lr, m), ops.sqrt(ops.add(v, epsilon))))

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                       "batch_size": self.batch_size})
        return config


KINDS = ("adam", "rmsprop", "authors_adam")


def make_optimizer(kind: str, learning_rate: float, adam_epsilon: float = 1.5e-4, batch_size: int = 1):
    """``adam``: Keras Adam (epsilon ``adam_epsilon``); ``rmsprop``: the authors' DQN
    RMSProp (centered, rho 0.95, epsilon 0.01); ``authors_adam``: their AMN Adam for a
    loss averaged over ``batch_size`` samples."""
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate, epsilon=adam_epsilon)
    if kind == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, rho=0.95, momentum=0.0, epsilon=0.01, centered=True)
    if kind == "authors_adam":
        return AuthorsAdam(learning_rate, batch_size=batch_size)
    raise ValueError(f"unknown optimizer {kind!r}: one of {KINDS}")
