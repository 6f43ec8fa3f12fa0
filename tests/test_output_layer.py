"""--init_output_layer: what a transferred DQN's output layer starts as (keep, reinit, rescale).

On the shipped AMN-feature SavedModel (a real AMN) and real Breakout random-play states."""

import keras
import numpy as np
import pytest
from conftest import parsed_flags

from amn_tf import cli, envs, networks, runtime, transfer
from amn_tf.config import ConfigError, setting_label

AMN = "saved_models/amn/amn-feature/1"
LEGAL = envs.legal_actions("Breakout")  # ids 0, 1, 3, 4 of the 18


def _output_layer(model):
    return model.get_layer(networks.OUTPUT_LAYER).get_weights()


def test_action_spread_against_a_hand_computation():
    # Two states, outputs over 5 action ids, legal ids [0, 1, 3]:
    #   state 0: legal outputs 1, 5, 2   -> best - worst = 5 - 1 = 4
    #   state 1: legal outputs 0, -1, 3  -> 3 - (-1) = 4 ... with id 4 (= 9) illegal, ignored
    #   state 2: legal outputs 2, 2, 2.5 -> 0.5
    # mean spread = (4 + 4 + 0.5) / 3 = 2.8333...
    outputs = np.array([[1, 5, 100, 2, -7], [0, -1, 0, 3, 9], [2, 2, -50, 2.5, 0]], np.float32)
    spread = transfer.action_spread(lambda states, training: (outputs, None), None, [0, 1, 3])
    assert spread == pytest.approx(8.5 / 3)


@pytest.mark.slow
def test_rescale_matches_the_random_init_spread_by_one_factor():
    states, _ = transfer.random_play_states("Breakout", "paper", 256, 0, "vector")
    runtime.set_seeds(7, False)
    random_init, _ = transfer.build_initial_network("random", "Breakout")
    kept, _ = transfer.build_initial_network(f"amn:{AMN}", "Breakout")
    runtime.set_seeds(7, False)  # the run's order: seeds, then the initial network
    scaled, origin = transfer.build_initial_network(f"amn:{AMN}", "Breakout", output_layer="rescale",
                                                    seed=0)
    assert origin["output_layer"] == "rescale"
    # The factor, by hand from the two unscaled networks on the same 1,024 states.
    spread_states, _ = transfer.random_play_states("Breakout", "paper", transfer.SPREAD_STATES, 0, "vector")
    amn_q = np.asarray(kept(spread_states)[0], np.float64)[:, LEGAL]
    random_q = np.asarray(random_init(spread_states)[0], np.float64)[:, LEGAL]
    amn_spread = np.mean(amn_q.max(1) - amn_q.min(1))
    random_spread = np.mean(random_q.max(1) - random_q.min(1))
    assert amn_spread > 10 * random_spread  # the AMN's logits are far apart: what rescale is for
    assert origin["output_scale"] == pytest.approx(random_spread / amn_spread, rel=1e-5)
    assert origin["spread_after"] == pytest.approx(random_spread, rel=1e-4)
    # Kernel and bias both scaled by the factor; every other layer is the AMN's own.
    for mine, theirs in zip(_output_layer(scaled), _output_layer(kept)):
        np.testing.assert_allclose(mine, theirs * origin["output_scale"], rtol=1e-6)
    for layer in kept.layers:
        if layer.name != networks.OUTPUT_LAYER:
            for mine, theirs in zip(scaled.get_layer(layer.name).get_weights(), layer.get_weights()):
                np.testing.assert_array_equal(mine, theirs)
    # On other states the spread moved by the same factor (the outputs are linear in the layer).
    scaled_q = np.asarray(scaled(states)[0], np.float64)[:, LEGAL]
    kept_q = np.asarray(kept(states)[0], np.float64)[:, LEGAL]
    np.testing.assert_allclose(scaled_q, kept_q * origin["output_scale"], rtol=1e-4, atol=1e-6)


def test_reinit_is_the_random_init_output_layer_of_the_same_seed():
    runtime.set_seeds(3, False)
    random_init, _ = transfer.build_initial_network("random", "Breakout")
    runtime.set_seeds(3, False)
    reinit, origin = transfer.build_initial_network(f"amn:{AMN}", "Breakout", output_layer="reinit")
    kept, _ = transfer.build_initial_network(f"amn:{AMN}", "Breakout")
    assert origin["output_layer"] == "reinit"
    for mine, theirs in zip(_output_layer(reinit), _output_layer(random_init)):
        np.testing.assert_array_equal(mine, theirs)
    assert not np.array_equal(_output_layer(reinit)[0], _output_layer(kept)[0])
    for layer in kept.layers:  # the torso stays the AMN's
        if layer.name != networks.OUTPUT_LAYER:
            for mine, theirs in zip(reinit.get_layer(layer.name).get_weights(), layer.get_weights()):
                np.testing.assert_array_equal(mine, theirs)
    # Another seed gives another layer: the layer follows the seed, not a fixed draw.
    keras.utils.set_random_seed(4)
    other, _ = transfer.build_initial_network(f"amn:{AMN}", "Breakout", output_layer="reinit")
    assert not np.array_equal(_output_layer(other)[0], _output_layer(reinit)[0])


def _config(*args):
    with parsed_flags(*args) as values:
        return cli.build(values)


def test_flag_needs_an_amn_init_and_labels_the_run():
    with pytest.raises(ConfigError, match="--init_output_layer=rescale treats an AMN's output layer"):
        _config("--mode=transfer", "--game=Breakout", "--init=random", "--init_output_layer=rescale")
    config = _config("--mode=transfer", "--game=Breakout", f"--init=amn:{AMN}", "--init_output_layer=reinit")
    assert config.output_layer == "reinit"
    assert config.dqn.run_dir == "runs/transfer-Breakout-amn-feature-reinit-seed0"
    assert _config("--mode=transfer", "--game=Breakout", f"--init=amn:{AMN}").output_layer == "keep"
    assert setting_label(f"amn:{AMN}", "keep") == "amn-feature"
    assert setting_label(f"amn:{AMN}", "rescale") == "amn-feature-rescale"


def test_init_path_missing_or_a_file_is_named_as_such(tmp_path):
    with pytest.raises(transfer.InitError, match="does not exist"):
        transfer.build_initial_network(f"amn:{tmp_path / 'missing'}", "Breakout")
    a_file = tmp_path / "amn.keras"
    a_file.write_bytes(b"")
    with pytest.raises(transfer.InitError, match="amn.keras is a file, not a SavedModel directory"):
        transfer.build_initial_network(f"amn:{a_file}", "Breakout")
