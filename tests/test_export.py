"""SavedModel export: signatures, metadata, atomic writes, and LoadedPolicy's checks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import frames_batch

from amn_tf import envs, export, networks


def tree_digest(path) -> dict:
    digests = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                digests[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return digests


# ------------------------------------------------------------------- experts
def test_expert_signature_matches_keras_model(pong_expert):
    frames = frames_batch(5, seed=2)
    module = tf.saved_model.load(pong_expert.path)
    signature = module.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["frames"]
    assert inputs["frames"].dtype == tf.uint8 and inputs["frames"].shape.as_list() == [None, 84, 84, 4]
    outputs = signature(frames=tf.constant(frames))
    assert set(outputs) == {"q_values", "action", "features"}
    q_values, features = pong_expert.model(frames, training=False)
    assert outputs["q_values"].dtype == tf.float32 and outputs["q_values"].shape == (5, 6)
    assert outputs["features"].dtype == tf.float32 and outputs["features"].shape == (5, 512)
    assert outputs["action"].dtype == tf.int32 and outputs["action"].shape == (5,)
    np.testing.assert_allclose(outputs["q_values"], q_values, atol=1e-5)
    np.testing.assert_allclose(outputs["features"], features, atol=1e-5)
    # The action is the ALE id of the best legal output, not the output index.
    expected = pong_expert.legal[np.argmax(outputs["q_values"].numpy(), axis=-1)]
    np.testing.assert_array_equal(outputs["action"], expected)
    assert set(outputs["action"].numpy().tolist()) <= set(pong_expert.legal.tolist())


def test_dueling_head_is_value_plus_centred_advantages_and_exports_alike(tmp_path, float32_policy):
    keras.utils.set_random_seed(3)
    model = networks.nature_dqn(6, dueling=True)
    frames = frames_batch(5, seed=4)
    q_values, features = (t.numpy() for t in model(frames, training=False))
    value_layer, advantage_layer = model.get_layer("value"), model.get_layer("advantages")
    value = features @ value_layer.kernel.numpy() + value_layer.bias.numpy()
    advantages = features @ advantage_layer.kernel.numpy() + advantage_layer.bias.numpy()
    np.testing.assert_allclose(q_values, value + advantages - advantages.mean(axis=1, keepdims=True),
                               atol=1e-5)
    assert features.shape == (5, 512)  # the layer an AMN regresses, as without the head
    path = str(tmp_path / "experts" / "Pong" / "1")
    export.export_expert(model, "Pong", path, provenance={}, protocol="paper")
    outputs = tf.saved_model.load(path).signatures["serving_default"](frames=tf.constant(frames))
    np.testing.assert_allclose(outputs["q_values"], q_values, atol=1e-5)
    np.testing.assert_allclose(outputs["features"], features, atol=1e-5)


def test_expert_metadata(pong_expert):
    module = tf.saved_model.load(pong_expert.path)
    metadata = json.loads(module.metadata.numpy().decode())
    with open(os.path.join(pong_expert.path, "assets", export.METADATA_FILE)) as handle:
        assert json.load(handle) == metadata
    assert metadata["format"] == export.FORMAT
    assert metadata["kind"] == "expert"
    assert metadata["games"] == ["Pong"]
    assert metadata["legal_actions"] == {"Pong": [0, 1, 3, 4, 11, 12]}
    assert metadata["protocol"] == "paper"
    assert metadata["feature_size"] == 512
    assert metadata["provenance"] == {"test": True}


def test_loaded_policy_expert(pong_expert):
    policy = export.LoadedPolicy(pong_expert.path)
    assert policy.kind == "expert" and policy.games == ["Pong"] and not policy.multitask
    assert policy.feature_size == 512 and policy.protocol == "paper"
    np.testing.assert_array_equal(policy.legal_actions("pong"), pong_expert.legal)
    frames = frames_batch(3, seed=4)
    q_values, _ = pong_expert.model(frames, training=False)
    values = policy.values(frames, "ALE/Pong-v5")
    assert values.shape == (3, 18)
    np.testing.assert_allclose(values[:, pong_expert.legal], q_values, atol=1e-5)
    illegal = np.setdiff1d(np.arange(18), pong_expert.legal)
    assert (values[:, illegal] == np.float32(-1e9)).all()
    actions = policy.act(frames, "Pong")
    np.testing.assert_array_equal(actions, pong_expert.legal[np.argmax(q_values, axis=-1)])


def test_loaded_policy_refuses_another_game(pong_expert):
    policy = export.LoadedPolicy(pong_expert.path)
    with pytest.raises(export.SavedModelError, match="Pong.*not Breakout"):
        policy.act(frames_batch(1), "Breakout")
    with pytest.raises(export.SavedModelError):
        policy.legal_actions("Breakout")


def test_no_temporary_directory_left_after_success(pong_expert):
    parent = os.path.dirname(pong_expert.path)
    assert os.listdir(parent) == ["1"]
    assert os.path.exists(os.path.join(pong_expert.path, "variables", "variables.index"))
    assert export.next_version(parent) == 2
    assert export.next_version(os.path.join(parent, "missing")) == 1


def test_export_to_existing_path_is_refused_and_leaves_it_untouched(pong_expert, tmp_path):
    path = str(tmp_path / "Pong" / "1")
    shutil.copytree(pong_expert.path, path)
    before = tree_digest(path)
    other = networks.nature_dqn(len(pong_expert.legal), name="other")
    with pytest.raises(export.ExportError, match="already exists"):
        export.export_expert(other, "Pong", path, provenance={}, protocol="paper")
    assert tree_digest(path) == before
    assert sorted(os.listdir(tmp_path / "Pong")) == ["1"]  # no .tmp- left behind either
    frames = frames_batch(2, seed=8)
    np.testing.assert_allclose(export.LoadedPolicy(path).outputs(frames, "Pong")["q_values"],
                               pong_expert.model(frames, training=False)[0], atol=1e-5)


def test_export_failure_is_an_export_error(tmp_path, float32_policy):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should go")
    model = networks.nature_dqn(len(envs.legal_actions("Breakout")))
    with pytest.raises(export.ExportError, match="could not write"):
        export.export_expert(model, "Breakout", str(blocker / "Breakout" / "1"), {}, "paper")


# ----------------------------------------------------------------- multitask
@pytest.fixture(scope="module")
def multitask(tmp_path_factory, float32_policy):
    keras.mixed_precision.set_global_policy("float32")  # whatever another module left set
    keras.utils.set_random_seed(3)
    model = networks.nature_dqn(envs.NUM_ACTIONS, name="amn")
    path = str(tmp_path_factory.mktemp("amn") / "amn" / "test" / "1")
    export.export_multitask(model, ["Pong", "breakout"], path, provenance={}, protocol="machado")
    return model, path


def test_multitask_logits_are_masked_per_game(multitask):
    model, path = multitask
    frames = frames_batch(4, seed=6)
    game_id = np.array([0, 1, 1, 0], np.int32)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"frames", "game_id"}
    outputs = signature(frames=tf.constant(frames), game_id=tf.constant(game_id))
    assert set(outputs) == {"logits", "action", "features"}
    assert outputs["logits"].dtype == tf.float32 and outputs["logits"].shape == (4, 18)
    assert outputs["action"].dtype == tf.int32
    logits, features = model(frames, training=False)
    np.testing.assert_allclose(outputs["features"], features, atol=1e-5)
    masks = [envs.legal_mask("Pong"), envs.legal_mask("Breakout")]
    for row in range(4):
        mask = masks[game_id[row]]
        np.testing.assert_allclose(outputs["logits"][row].numpy()[mask], logits[row].numpy()[mask], atol=1e-5)
        assert (outputs["logits"][row].numpy()[~mask] == np.float32(-1e9)).all()
        action = int(outputs["action"][row])
        assert mask[action]
        assert action == int(np.flatnonzero(mask)[np.argmax(logits[row].numpy()[mask])])


@pytest.mark.parametrize("game_id", [2, -1])
def test_multitask_rejects_game_id_out_of_range(multitask, game_id):
    _, path = multitask
    signature = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        signature(frames=tf.constant(frames_batch(1)), game_id=tf.constant([game_id], tf.int32))


def test_multitask_game_id_error_is_always_the_clear_one(multitask):
    _, path = multitask
    signature = tf.saved_model.load(path).signatures["serving_default"]
    frames = tf.constant(frames_batch(1))
    for _ in range(100):
        with pytest.raises(tf.errors.InvalidArgumentError, match="game_id out of range"):
            signature(frames=frames, game_id=tf.constant([2], tf.int32))


def test_loaded_policy_multitask(multitask):
    model, path = multitask
    policy = export.LoadedPolicy(path)
    assert policy.multitask and policy.kind == "amn" and policy.games == ["Pong", "Breakout"]
    assert policy.protocol == "machado"
    assert policy.game_id("breakout") == 1
    frames = frames_batch(3, seed=9)
    breakout = policy.values(frames, "Breakout")
    assert (breakout[:, [2, 5, 11, 12]] == np.float32(-1e9)).all()
    assert set(policy.act(frames, "Breakout").tolist()) <= {0, 1, 3, 4}
    assert set(policy.act(frames, "Pong").tolist()) <= {0, 1, 3, 4, 11, 12}
    with pytest.raises(export.SavedModelError, match="Seaquest"):
        policy.act(frames, "Seaquest")


# ----------------------------------------------------------- bad SavedModels
def test_loaded_policy_missing_directory(tmp_path):
    with pytest.raises(export.SavedModelError, match="does not exist"):
        export.LoadedPolicy(str(tmp_path / "nothing" / "1"))
    a_file = tmp_path / "model.keras"
    a_file.write_bytes(b"")
    with pytest.raises(export.SavedModelError, match="model.keras: it is a file, not a SavedModel directory"):
        export.LoadedPolicy(str(a_file))


def test_loaded_policy_directory_without_saved_model(tmp_path):
    with pytest.raises(export.SavedModelError, match="saved_model.pb"):
        export.LoadedPolicy(str(tmp_path))


def test_loaded_policy_without_variables_index(pong_expert, tmp_path):
    path = str(tmp_path / "1")
    shutil.copytree(pong_expert.path, path)
    os.remove(os.path.join(path, "variables", "variables.index"))
    with pytest.raises(export.SavedModelError, match="variables.index"):
        export.LoadedPolicy(path)


def test_loaded_policy_garbage_saved_model(pong_expert, tmp_path):
    path = str(tmp_path / "1")
    shutil.copytree(pong_expert.path, path)
    with open(os.path.join(path, "saved_model.pb"), "wb") as handle:
        handle.write(b"\x00garbage" * 10)
    with pytest.raises(export.SavedModelError, match="could not be loaded|not an amn_tf"):
        export.LoadedPolicy(path)


def test_loaded_policy_non_amn_saved_model(tmp_path):
    class Plain(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 84, 84, 4], tf.uint8, name="frames")])
        def serve(self, frames):
            return {"y": tf.reduce_sum(tf.cast(frames, tf.float32), axis=[1, 2, 3])}

    module = Plain()
    path = str(tmp_path / "plain")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    with pytest.raises(export.SavedModelError, match="not an amn_tf SavedModel"):
        export.LoadedPolicy(path)


# ------------------------------------------------------- provenance and rewriting metadata
def test_exported_provenance_names_paths_portably(tmp_path, float32_policy):
    model = networks.nature_dqn(len(envs.legal_actions("Pong")))
    provenance = {"run_dir": str(tmp_path / "elsewhere" / "Pong-seed0"), "frames_trained": 8,
                  "flags": {"export_dir": "/machine/runs/exports", "experts": ["/machine/x/experts/Pong/3"],
                            "report_dir": "docs/results"}}
    path = str(tmp_path / "experts" / "Pong" / "1")
    export.export_expert(model, "Pong", path, provenance, protocol="paper")
    expected = {"run_dir": "Pong-seed0", "frames_trained": 8,
                "flags": {"export_dir": "exports", "experts": ["experts/Pong/3"], "report_dir": "docs/results"}}
    assert export.LoadedPolicy(path).metadata["provenance"] == expected
    with open(os.path.join(path, "assets", export.METADATA_FILE)) as handle:
        assert json.load(handle)["provenance"] == expected


def _with_run_dir(run_dir):
    def rewrite(metadata):
        metadata["provenance"] = {"run_dir": run_dir}
        return metadata
    return rewrite


def test_rewrite_metadata_keeps_weights_outputs_and_test_play(pong_expert, tmp_path):
    path = str(tmp_path / "experts" / "Pong" / "1")
    shutil.copytree(pong_expert.path, path)
    play = {"game": "Pong", "protocol": "paper", "epsilon": 0.05, "max_steps": 27_000,
            "expert": {"mean": 1.0}, "random": {"mean": -20.0}}
    export.write_test_play(path, play)
    frames = frames_batch(3, seed=5)
    before = export.LoadedPolicy(path).outputs(frames, "Pong")
    assert export.rewrite_metadata(path, _with_run_dir("runs/Pong-seed0"))
    after = export.LoadedPolicy(path)
    assert after.metadata["provenance"] == {"run_dir": "runs/Pong-seed0"}
    assert after.metadata["games"] == ["Pong"] and after.kind == "expert"
    with open(os.path.join(path, "assets", export.METADATA_FILE)) as handle:
        assert json.load(handle) == after.metadata
    for name, value in after.outputs(frames, "Pong").items():
        np.testing.assert_array_equal(value, before[name])  # exactly, not within a tolerance
    assert export.read_test_play(path) == {"format": export.TEST_PLAY_FORMAT, **play}
    assert sorted(os.listdir(tmp_path / "experts" / "Pong")) == ["1"]  # no .tmp-/.old- left
    digest = tree_digest(path)
    assert not export.rewrite_metadata(path, lambda metadata: metadata)  # nothing to change
    assert tree_digest(path) == digest


def test_rewrite_metadata_of_a_multitask_model(multitask, tmp_path):
    model, original = multitask
    path = str(tmp_path / "amn" / "test" / "1")
    shutil.copytree(original, path)
    assert export.rewrite_metadata(path, _with_run_dir("amn-seed0"))
    loaded = export.LoadedPolicy(path)
    assert loaded.metadata["provenance"] == {"run_dir": "amn-seed0"} and loaded.games == ["Pong", "Breakout"]
    frames = frames_batch(2, seed=9)
    np.testing.assert_array_equal(loaded.values(frames, "Breakout"), export.LoadedPolicy(original).values(frames, "Breakout"))


def test_rewrite_metadata_that_fails_leaves_the_model_untouched(pong_expert, tmp_path, monkeypatch):
    path = str(tmp_path / "Pong" / "1")
    shutil.copytree(pong_expert.path, path)
    before = tree_digest(path)
    monkeypatch.setenv("AMN_TF_OSERROR_AT", "export_write:ENOSPC")
    with pytest.raises(export.ExportError, match="could not write"):
        export.rewrite_metadata(path, _with_run_dir("elsewhere"))
    assert tree_digest(path) == before
    assert sorted(os.listdir(tmp_path / "Pong")) == ["1"]
