"""Losses against values computed by hand (arithmetic in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from amn_tf import losses

# Three samples, three outputs; output 2 is illegal at s_t.
Q_TM1 = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.0, 0.5, 0.0]])
A_TM1 = tf.constant([2, 0, 1])
R_T = tf.constant([1.0, -1.0, 0.25])
DISCOUNT_T = tf.constant([0.9, 0.0, 0.5])
Q_T_TARGET = tf.constant([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0], [0.1, 0.2, 9.0]])
Q_T_ONLINE = tf.constant([[5.0, 1.0, 100.0], [0.0, 7.0, 0.0], [3.0, 2.0, 50.0]])
MASK_T = tf.constant([True, True, False])


def test_huber_quadratic_inside_linear_outside():
    x = tf.constant([-3.0, -0.5, 0.0, 0.5, 3.0])
    # delta 1: 0.5*1 + 1*(3-1) = 2.5 outside; 0.5*0.25 = 0.125 inside.
    np.testing.assert_allclose(losses.huber(x, 1.0), [2.5, 0.125, 0.0, 0.125, 2.5])
    # delta 2: 0.5*4 + 2*(3-2) = 4 outside.
    np.testing.assert_allclose(losses.huber(x, 2.0), [4.0, 0.125, 0.0, 0.125, 4.0])


def test_dqn_td_error_and_loss_with_legal_mask():
    errors = losses.td_error(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T_TARGET, mask_t=MASK_T)
    # s0: max over legal (10, 20) = 20 (not the illegal 30): 1 + 0.9*20 = 19; 19 - Q(s,2)=3 -> 16
    # s1: terminal: -1 + 0*2 = -1; -1 - Q(s,0)=4 -> -5
    # s2: max(0.1, 0.2) = 0.2: 0.25 + 0.5*0.2 = 0.35; 0.35 - Q(s,1)=0.5 -> -0.15
    np.testing.assert_allclose(errors, [16.0, -5.0, -0.15], rtol=1e-6)
    loss = losses.td_loss(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T_TARGET, mask_t=MASK_T)
    # Huber: 0.5 + 15 = 15.5; 0.5 + 4 = 4.5; 0.5*0.15^2 = 0.01125; mean over 3.
    assert float(loss) == pytest.approx((15.5 + 4.5 + 0.01125) / 3, rel=1e-6)


def test_td_error_without_mask_takes_the_plain_max():
    errors = losses.td_error(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T_TARGET)
    # s0: 1 + 0.9*30 = 28; 28 - 3 = 25.  s2: 0.25 + 0.5*9 = 4.75; 4.75 - 0.5 = 4.25
    np.testing.assert_allclose(errors, [25.0, -5.0, 4.25], rtol=1e-6)


def test_double_dqn_td_error_and_loss():
    errors = losses.td_error(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T_TARGET, Q_T_ONLINE, MASK_T)
    # Online argmax over legal outputs (the 100 and 50 on output 2 are ignored):
    # s0: argmax(5, 1) = 0 -> Q_target = 10: 1 + 0.9*10 = 10; 10 - 3 = 7
    # s1: argmax(0, 7) = 1 -> Q_target = 2: -1 + 0*2 = -1; -1 - 4 = -5
    # s2: argmax(3, 2) = 0 -> Q_target = 0.1: 0.25 + 0.5*0.1 = 0.3; 0.3 - 0.5 = -0.2
    np.testing.assert_allclose(errors, [7.0, -5.0, -0.2], rtol=1e-6)
    loss = losses.td_loss(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T_TARGET, Q_T_ONLINE, MASK_T)
    # Huber: 0.5 + 6 = 6.5; 4.5; 0.5*0.04 = 0.02; mean over 3.
    assert float(loss) == pytest.approx((6.5 + 4.5 + 0.02) / 3, rel=1e-6)


def test_per_sample_mask():
    mask = tf.constant([[True, False, False], [False, False, True], [True, True, True]])
    errors = losses.td_error(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T_TARGET, mask_t=mask)
    # s0: only output 0: 1 + 0.9*10 = 10; 10 - 3 = 7.  s1: -1 - 4 = -5.
    # s2: all legal, max 9: 0.25 + 0.5*9 = 4.75; 4.75 - 0.5 = 4.25
    np.testing.assert_allclose(errors, [7.0, -5.0, 4.25], rtol=1e-6)


def test_huber_delta_in_td_loss():
    loss = losses.td_loss(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T_TARGET, mask_t=MASK_T, delta=2.0)
    # errors 16, -5, -0.15: 0.5*4 + 2*(16-2) = 30; 2 + 2*3 = 8; 0.01125
    assert float(loss) == pytest.approx((30.0 + 8.0 + 0.01125) / 3, rel=1e-6)


def test_td_loss_gradient_is_clipped_error_and_target_is_constant():
    q_tm1 = tf.Variable(Q_TM1)
    q_t_target = tf.Variable(Q_T_TARGET)
    with tf.GradientTape() as tape:
        loss = losses.td_loss(q_tm1, A_TM1, R_T, DISCOUNT_T, q_t_target, mask_t=MASK_T)
    grad_q, grad_target = tape.gradient(loss, [q_tm1, q_t_target])
    # d/dQ mean Huber(target - Q) = -clip(error, -1, 1) / 3 at the action taken, 0 elsewhere:
    # errors 16, -5, -0.15 -> -1/3 at [0, 2], +1/3 at [1, 0], +0.05 at [2, 1].
    expected = np.zeros((3, 3), np.float32)
    expected[0, 2], expected[1, 0], expected[2, 1] = -1 / 3, 1 / 3, 0.15 / 3
    np.testing.assert_allclose(grad_q, expected, rtol=1e-5, atol=1e-7)
    assert grad_target is None or not np.any(grad_target)


# ------------------------------------------------------------- Actor-Mimic
# Two samples over four outputs; output 2 is illegal in sample 0.
MASK = tf.constant([[True, True, False, True], [True, True, True, True]])
# Sample 0: exp over legal = (2, 1, 1) -> pi_E = (0.5, 0.25, 0, 0.25); the 50 is illegal.
# Sample 1: all zero -> pi_E uniform 0.25.
EXPERT_Q = tf.constant([[math.log(2.0), 0.0, 50.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
# Sample 0: exp over legal = (1, 3, 1) -> pi_S = (0.2, 0.6, 0, 0.2); the 7 is illegal.
# Sample 1: exp = (1, 1, 2, 4) / 8 -> pi_S = (1/8, 1/8, 1/4, 1/2).
STUDENT = tf.constant([[0.0, math.log(3.0), 7.0, 0.0], [0.0, 0.0, math.log(2.0), math.log(4.0)]])


def test_expert_policy_is_masked_boltzmann():
    policy = losses.expert_policy(EXPERT_Q, MASK, tau=1.0).numpy()
    np.testing.assert_allclose(policy, [[0.5, 0.25, 0.0, 0.25], [0.25] * 4], rtol=1e-6)
    assert policy[0, 2] == 0.0  # exactly zero, not merely small


def test_policy_regression_loss_by_hand():
    loss = losses.policy_regression_loss(STUDENT, EXPERT_Q, MASK, tau=1.0)
    # Sample 0: -(0.5 ln 0.2 + 0.25 ln 0.6 + 0.25 ln 0.2) = -(0.75 ln 0.2 + 0.25 ln 0.6)
    sample0 = -(0.75 * math.log(0.2) + 0.25 * math.log(0.6))
    # Sample 1: -0.25 (ln 1/8 + ln 1/8 + ln 1/4 + ln 1/2) = 0.25 * 9 ln 2
    sample1 = 0.25 * 9 * math.log(2.0)
    assert float(loss) == pytest.approx((sample0 + sample1) / 2, rel=1e-6)


def test_tau_changes_the_target():
    loss = losses.policy_regression_loss(STUDENT, EXPERT_Q, MASK, tau=2.0)
    # Sample 0: Q/2 = (ln2 / 2, 0, -, 0) -> exp = (sqrt2, 1, 1) -> pi_E = (sqrt2, 1, 1) / (2 + sqrt2)
    root = math.sqrt(2.0)
    pi = [root / (2 + root), 1 / (2 + root), 1 / (2 + root)]
    sample0 = -(pi[0] * math.log(0.2) + pi[1] * math.log(0.6) + pi[2] * math.log(0.2))
    sample1 = 0.25 * 9 * math.log(2.0)  # uniform expert: unchanged by tau
    assert float(loss) == pytest.approx((sample0 + sample1) / 2, rel=1e-6)
    assert float(loss) != pytest.approx(float(losses.policy_regression_loss(STUDENT, EXPERT_Q, MASK)))
    np.testing.assert_allclose(losses.expert_policy(EXPERT_Q, MASK, 2.0)[0], [pi[0], pi[1], 0, pi[2]],
                               rtol=1e-6)


def test_policy_regression_gradient_is_zero_on_illegal_actions():
    student = tf.Variable(STUDENT)
    expert = tf.Variable(EXPERT_Q)
    with tf.GradientTape() as tape:
        loss = losses.policy_regression_loss(student, expert, MASK, tau=1.0)
    grad_student, grad_expert = tape.gradient(loss, [student, expert])
    # d/dlogits of cross-entropy = (pi_S - pi_E) / B on legal outputs, 0 on illegal ones:
    # sample 0: ((0.2, 0.6, -, 0.2) - (0.5, 0.25, -, 0.25)) / 2 = (-0.15, 0.175, 0, -0.025)
    # sample 1: ((1/8, 1/8, 1/4, 1/2) - 1/4) / 2 = (-0.0625, -0.0625, 0, 0.125)
    expected = [[-0.15, 0.175, 0.0, -0.025], [-0.0625, -0.0625, 0.0, 0.125]]
    np.testing.assert_allclose(grad_student, expected, rtol=1e-5, atol=1e-7)
    assert grad_student.numpy()[0, 2] == 0.0
    assert grad_expert is None or not np.any(grad_expert)  # the expert is a fixed target


def test_policy_regression_ignores_illegal_extremes():
    # Illegal entries may hold anything (ALE ids the game lacks): the loss must not move.
    student = STUDENT.numpy().copy()
    expert = EXPERT_Q.numpy().copy()
    student[0, 2], expert[0, 2] = -1e6, 1e6
    moved = losses.policy_regression_loss(student, expert, MASK)
    assert np.isfinite(float(moved))
    assert float(moved) == pytest.approx(float(losses.policy_regression_loss(STUDENT, EXPERT_Q, MASK)),
                                         rel=1e-6)


def test_feature_regression_loss_and_gradient():
    predicted = tf.Variable([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    expert = tf.Variable([[1.0, 0.0, 5.0], [1.0, 1.0, 1.0]])
    with tf.GradientTape() as tape:
        loss = losses.feature_regression_loss(predicted, expert)
    # difference (0, 2, -2) and (-1, -1, -1): 0.5*8 = 4 and 0.5*3 = 1.5; mean 2.75
    assert float(loss) == pytest.approx(2.75)
    grad_predicted, grad_expert = tape.gradient(loss, [predicted, expert])
    # Per sample the gradient is the raw difference; the batch mean divides by 2.
    np.testing.assert_allclose(grad_predicted, [[0.0, 1.0, -1.0], [-0.5, -0.5, -0.5]])
    assert grad_expert is None or not np.any(grad_expert)
    one = tf.Variable([[1.0, 2.0, 3.0]])
    with tf.GradientTape() as tape:
        loss = losses.feature_regression_loss(one, tf.constant([[1.0, 0.0, 5.0]]))
    np.testing.assert_allclose(tape.gradient(loss, one), [[0.0, 2.0, -2.0]])  # = difference


def test_masked_argmax_and_max():
    values = tf.constant([[1.0, 9.0, 3.0], [4.0, -2.0, 8.0]])
    mask = tf.constant([True, False, True])
    np.testing.assert_array_equal(losses.masked_argmax(values, mask), [2, 2])
    np.testing.assert_allclose(losses.masked_max(values, mask), [3.0, 8.0])
    assert losses.masked_argmax(values, mask).dtype == tf.int32


def test_authors_update_summed_loss_with_centered_rmsprop_by_hand():
    """One DqnLearner update with --batch_loss=sum and the authors' RMSProp equals their Lua
    update computed by hand: dw = sum_i clip(delta_i, -1, 1) dQ_i/dw, then
    g = 0.05 dw, g2 = 0.05 dw^2 (first step from zeros), w += lr dw / sqrt(g2 - g^2 + 0.01)."""
    import keras

    from amn_tf import dqn_agent, optimizers

    keras.mixed_precision.set_global_policy("float32")
    num_actions = 3

    def tiny_network():
        # Q(s) = W x(s) + b with x(s) the 4 frames' top-left pixel (a linear DQN).
        frames = keras.Input((84, 84, 4), dtype="uint8")
        x = keras.layers.Lambda(lambda f: keras.ops.cast(f[:, 0, 0, :], "float32") / 10.0)(frames)
        q = keras.layers.Dense(num_actions, kernel_initializer="zeros", bias_initializer="zeros")(x)
        return keras.Model(frames, [q, x])

    online, target = tiny_network(), tiny_network()
    w0 = np.array([[0.1, -0.2, 0.3], [0.0, 0.5, -0.1], [0.2, 0.2, 0.2], [-0.3, 0.1, 0.0]], np.float32)
    b0 = np.array([0.05, -0.05, 0.0], np.float32)
    online.set_weights([w0, b0])
    target.set_weights([w0 * 2.0, b0])
    pixels_tm1 = np.array([[10, 20, 0, 5], [3, 0, 7, 1]], np.uint8)
    pixels_t = np.array([[1, 1, 1, 1], [9, 0, 0, 30]], np.uint8)

    def states(pixels):
        s = np.zeros((2, 84, 84, 4), np.uint8)
        s[:, 0, 0, :] = pixels
        return s

    batch = {"s_tm1": tf.constant(states(pixels_tm1)), "s_t": tf.constant(states(pixels_t)),
             "a_tm1": tf.constant([0, 2], tf.int32), "r_t": tf.constant([1.0, 0.0]),
             "discount_t": tf.constant([0.99, 0.0])}
    optimizer = optimizers.make_optimizer("rmsprop", 0.00025)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    learner = dqn_agent.DqnLearner(online, target, optimizer, dataset, np.arange(num_actions, dtype=np.int32),
                             np.ones(num_actions, bool), double_dqn=False, batch_loss="sum")
    learner._update(batch)

    # By hand, in float64.
    x_tm1, x_t = pixels_tm1 / 10.0, pixels_t / 10.0
    q_tm1 = x_tm1 @ w0 + b0
    v_t = (x_t @ (w0 * 2.0) + b0).max(axis=1)  # DQN target: max over the target network
    target_values = np.array([1.0, 0.0]) + np.array([0.99, 0.0]) * v_t
    delta = np.clip(target_values - q_tm1[[0, 1], [0, 2]], -1.0, 1.0)
    # d(sum Huber)/dq_tm1[i, a_i] = -delta_i; dq/dW = x, dq/db = 1 (summed, not averaged).
    grad_w = np.zeros_like(w0, np.float64)
    grad_b = np.zeros_like(b0, np.float64)
    for i, a in enumerate([0, 2]):
        grad_w[:, a] -= delta[i] * x_tm1[i]
        grad_b[a] -= delta[i]

    def step(w, grad):
        g, g2 = 0.05 * grad, 0.05 * grad**2
        return w - 0.00025 * grad / np.sqrt(g2 - g**2 + 0.01)

    w1, b1 = (v.numpy() for v in online.trainable_variables)
    np.testing.assert_allclose(w1, step(w0, grad_w), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(b1, step(b0, grad_b), rtol=1e-5, atol=1e-8)
    # The update moved the weights by far more than a mean loss would have (eps dominates
    # the root there): the batch scale matters with this optimizer.
    assert np.abs(w1 - w0).max() > 1e-4


def test_authors_adam_two_steps_by_hand_and_batch_scale():
    """m = 0.95 m + 0.05 g, v = 0.95 v + 0.05 g^2, w -= lr m / sqrt(v + 0.01) on a summed
    gradient; on a mean over B samples (g / B) epsilon is 0.01 / B^2 and the step is the same."""
    from amn_tf import optimizers

    g1, g2 = np.array([0.5, -2.0, 0.0]), np.array([1.0, 1.0, -3.0])
    w = np.array([1.0, 1.0, 1.0])
    # By hand, summed gradients: step 1, m = 0.05 g1, v = 0.05 g1^2
    m, v = 0.05 * g1, 0.05 * g1**2
    w1 = w - 0.1 * m / np.sqrt(v + 0.01)  # e.g. w1[0] = 1 - 0.1 * 0.025 / sqrt(0.0125 + 0.01)
    m, v = 0.95 * m + 0.05 * g2, 0.95 * v + 0.05 * g2**2
    w2 = w1 - 0.1 * m / np.sqrt(v + 0.01)
    assert w1[0] == pytest.approx(1 - 0.0025 / math.sqrt(0.0225))
    for batch_size in (1, 4):
        variable = tf.Variable(w.astype(np.float32))
        optimizer = optimizers.make_optimizer("authors_adam", 0.1, batch_size=batch_size)
        optimizer.apply_gradients([(tf.constant(g1 / batch_size, tf.float32), variable)])
        np.testing.assert_allclose(variable.numpy(), w1, rtol=1e-5)
        optimizer.apply_gradients([(tf.constant(g2 / batch_size, tf.float32), variable)])
        np.testing.assert_allclose(variable.numpy(), w2, rtol=1e-5)
