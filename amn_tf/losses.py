"""Losses as pure functions of tensors (no state, no flags).

Shapes: B is the batch, A the number of network outputs.
"""

from __future__ import annotations

import tensorflow as tf

_NEG = -1e9  # logit given to illegal actions: exp() underflows to exactly 0


def huber(x, delta: float = 1.0):
    """Quadratic within [-delta, delta], linear outside: the gradient is the TD error
    clipped to [-delta, delta] (the Nature DQN's error clipping)."""
    abs_x = tf.abs(x)
    quadratic = tf.minimum(abs_x, delta)
    return 0.5 * tf.square(quadratic) + delta * (abs_x - quadratic)


def masked_max(values, mask):
    """max over the entries where ``mask`` is True. values [B, A], mask [B, A] or [A]."""
    mask = tf.broadcast_to(tf.cast(mask, tf.bool), tf.shape(values))
    return tf.reduce_max(tf.where(mask, values, tf.fill(tf.shape(values), _NEG)), axis=-1)


def masked_argmax(values, mask):
    mask = tf.broadcast_to(tf.cast(mask, tf.bool), tf.shape(values))
    return tf.argmax(tf.where(mask, values, tf.fill(tf.shape(values), _NEG)), axis=-1, output_type=tf.int32)


def td_error(q_tm1, a_tm1, r_t, discount_t, q_t_target, q_t_online=None, mask_t=None):
    """One-step Q-learning error, per sample.

    target = r_t + discount_t * max_a Q_target(s_t, a)                       (DQN)
    target = r_t + discount_t * Q_target(s_t, argmax_a Q_online(s_t, a))     (double DQN)
    error  = target - Q(s_tm1, a_tm1); the target is not differentiated.

    Args:
      q_tm1: [B, A] online Q-values at s_tm1.
      a_tm1: [B] int, the output index taken.
      r_t: [B] float, (clipped) reward.
      discount_t: [B] float, gamma, or 0 where s_t is terminal.
      q_t_target: [B, A] target-network Q-values at s_t.
      q_t_online: [B, A] online Q-values at s_t for double DQN, or None.
      mask_t: [A] or [B, A] bool, legal outputs at s_t (None: all legal).
    """
    if mask_t is None:
        mask_t = tf.ones_like(q_t_target, tf.bool)
    if q_t_online is None:
        v_t = masked_max(q_t_target, mask_t)
    else:
        best = masked_argmax(q_t_online, mask_t)
        v_t = tf.gather(q_t_target, best, batch_dims=1)
    target = tf.stop_gradient(r_t + discount_t * v_t)
    q_taken = tf.gather(q_tm1, a_tm1, batch_dims=1)
    return target - q_taken


def td_loss(q_tm1, a_tm1, r_t, discount_t, q_t_target, q_t_online=None, mask_t=None, delta=1.0,
            reduction="mean"):
    """Huber loss of the TD error (see ``td_error``), ``reduction`` 'mean' or 'sum' over the
    batch. 'sum' gives the authors' gradient: each sample's clipped TD error times dQ/dw,
    summed over the batch, the scale their RMSProp epsilon (0.01) was tuned for."""
    errors = td_error(q_tm1, a_tm1, r_t, discount_t, q_t_target, q_t_online, mask_t)
    if reduction == "sum":
        return tf.reduce_sum(huber(errors, delta))
    if reduction == "mean":
        return tf.reduce_mean(huber(errors, delta))
    raise ValueError(f"unknown reduction {reduction!r}: 'mean' or 'sum'")


def masked_log_softmax(logits, mask):
    """log-softmax over the legal entries; illegal entries get a large negative value."""
    mask = tf.cast(mask, tf.bool)
    masked = tf.where(mask, logits, tf.fill(tf.shape(logits), _NEG))
    return tf.nn.log_softmax(masked, axis=-1)


def _per_sample_tau(tau, expert_q):
    """A number stays a number; a [B] vector (each sample's temperature) becomes [B, 1]."""
    if isinstance(tau, (int, float)):
        return tau
    tau = tf.cast(tau, expert_q.dtype)
    return tau[:, None] if tau.shape.rank == 1 else tau


def expert_policy(expert_q, mask, tau):
    """Boltzmann policy softmax(Q_E / tau) over the legal actions; 0 on illegal ones.
    ``tau``: one temperature, or [B] temperatures, one per sample (its game's)."""
    mask = tf.cast(mask, tf.bool)
    expert_q = tf.convert_to_tensor(expert_q)
    tau = _per_sample_tau(tau, expert_q)
    return tf.where(mask, tf.exp(masked_log_softmax(expert_q / tau, mask)), 0.0)


def policy_regression_loss(student_logits, expert_q, mask, tau=1.0):
    """Actor-Mimic policy regression, mean over the batch.

    L = - sum_{a legal} pi_E(a|s) log pi_AMN(a|s),
    pi_E = softmax(Q_E(s, .) / tau) and pi_AMN = softmax(logits) both over the legal set.
    Illegal actions get zero probability and, since their logits are replaced by a
    constant, no gradient.

    Args:
      student_logits: [B, 18] AMN outputs.
      expert_q: [B, 18] expert Q-values placed at their ALE ids (anything on illegal ids).
      mask: [B, 18] bool legal actions of each sample's game.
      tau: one temperature for all samples, or [B] (each sample's game's temperature).
    """
    targets = tf.stop_gradient(expert_policy(expert_q, mask, tau))
    log_student = masked_log_softmax(student_logits, mask)
    per_sample = -tf.reduce_sum(tf.where(tf.cast(mask, tf.bool), targets * log_student, 0.0), -1)
    return tf.reduce_mean(per_sample)


def feature_regression_loss(predicted, expert_features):
    """0.5 * ||f_i(h_AMN) - h_E||^2 summed over features, mean over the batch.

    Its gradient w.r.t. the prediction is the raw difference, so ``beta`` scales the
    gradient as in the authors' code (beta 0.01 there)."""
    difference = predicted - tf.stop_gradient(expert_features)
    return tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(difference), axis=-1))
