"""SavedModel export with explicit signatures, written atomically, and loading.

Layout follows TF Serving: ``<base>/<kind>/<name>/<version>/``. Each SavedModel carries
its metadata (kind, games, action sets, protocol, provenance) as a string variable
``metadata`` and as ``assets/amn_tf.json`` for people and tools without TensorFlow.

Models are exported computing in float32 whatever precision trained them, so a SavedModel
runs the same everywhere. Signatures (``serving_default``):

* expert / DQN: ``frames`` uint8 ``[None, 84, 84, 4]`` ->
  ``q_values`` float32 ``[None, n_legal]``, ``action`` int32 (ALE id), ``features``.
* AMN / multitask: ``frames`` and ``game_id`` int32 ``[None]`` ->
  ``logits`` float32 ``[None, 18]`` (illegal actions of that game at -1e9), ``action``
  int32 (a legal ALE id), ``features``.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import tensorflow as tf

from amn_tf import checkpoints, envs, faults, networks, rundirs

METADATA_FILE = "amn_tf.json"
FORMAT = "amn_tf/1"
# A test play stored beside an expert by ``--mode=eval --store_test_play`` (TF Serving leaves
# ``assets.extra/`` to its users): the AMN reads its expert's reference score from it.
TEST_PLAY_FILE = os.path.join("assets.extra", "test_play.json")
TEST_PLAY_FORMAT = "amn_tf/test_play/1"


class ExportError(RuntimeError):
    pass


class SavedModelError(ValueError):
    """A SavedModel that is missing, unreadable or not what was asked for."""


def run_export_path(summary: dict, base: str) -> str:
    """The version directory a run exports to: the one its checkpoint's ``summary`` fixed
    before an interrupted export (so a restart finishes that version), else the next free one."""
    path = (summary or {}).get("pending_export")
    return path or os.path.join(base, str(next_version(base)))


def next_version(directory: str) -> int:
    versions = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
    return max(versions, default=0) + 1


class _ExpertModule(tf.Module):
    def __init__(self, model, legal_actions, metadata):
        super().__init__()
        self.model = model
        self.legal_actions = tf.constant(legal_actions, tf.int32)
        # Outputs that are the legal actions: all of them for a per-game DQN, the legal ALE
        # ids for an 18-way network (a DQN transferred from an AMN).
        outputs = int(model.outputs[0].shape[-1])
        legal_outputs = np.arange(len(legal_actions)) if outputs == len(legal_actions) else legal_actions
        self.legal_outputs = tf.constant(legal_outputs, tf.int32)
        self.metadata = tf.Variable(json.dumps(metadata), trainable=False, dtype=tf.string)

    @tf.function(input_signature=[tf.TensorSpec([None, *envs.OBSERVATION_SHAPE], tf.uint8, name="frames")])
    def serve(self, frames):
        outputs, features = self.model(frames, training=False)
        q_values = tf.gather(outputs, self.legal_outputs, axis=-1)
        action = tf.gather(self.legal_actions, tf.argmax(q_values, axis=-1, output_type=tf.int32))
        return {"q_values": q_values, "action": action, "features": features}


# The AMN signature, shared by AMNs and multitask DQNs: frames and the game of each frame.
_MULTITASK_SIGNATURE = [
    tf.TensorSpec([None, *envs.OBSERVATION_SHAPE], tf.uint8, name="frames"),
    tf.TensorSpec([None], tf.int32, name="game_id"),
]


def _masked_outputs(logits, features, masks, game_id):
    """Illegal actions of each frame's game at -1e9, and the greedy legal action."""
    mask = tf.gather(masks, game_id)
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), -1e9))
    return {"logits": logits, "action": tf.argmax(logits, axis=-1, output_type=tf.int32),
            "features": features}


def _checked_game_id(game_id, num_games):
    """``game_id``, with range checks that run before anything uses it."""
    checks = [
        tf.debugging.assert_less(game_id, num_games, message="game_id out of range"),
        tf.debugging.assert_non_negative(game_id, message="game_id out of range"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(game_id)


class _MultitaskModule(tf.Module):
    def __init__(self, model, masks, metadata):
        super().__init__()
        self.model = model
        self.masks = tf.constant(masks, tf.bool)  # [G, 18]
        self.metadata = tf.Variable(json.dumps(metadata), trainable=False, dtype=tf.string)

    @tf.function(input_signature=_MULTITASK_SIGNATURE)
    def serve(self, frames, game_id):
        game_id = _checked_game_id(game_id, tf.shape(self.masks)[0])
        logits, features = self.model(frames, training=False)
        return _masked_outputs(logits, features, self.masks, game_id)


class _PerGameHeadsModule(tf.Module):
    """A multitask DQN (shared torso, one head per game over its legal actions) behind the
    AMN signature: each head's Q-values are placed at its game's ALE ids."""

    def __init__(self, torso, heads, games, metadata):
        super().__init__()
        self.torso = torso
        self.heads = heads
        eye = np.eye(envs.NUM_ACTIONS, dtype=np.float32)
        self.placements = [tf.constant(eye[envs.legal_actions(g)]) for g in games]
        self.masks = tf.constant(np.stack([envs.legal_mask(g) for g in games]), tf.bool)
        self.metadata = tf.Variable(json.dumps(metadata), trainable=False, dtype=tf.string)

    @tf.function(input_signature=_MULTITASK_SIGNATURE)
    def serve(self, frames, game_id):
        game_id = _checked_game_id(game_id, tf.shape(self.masks)[0])
        shared = self.torso(frames, training=False)
        placed, features = [], []
        for head, placement in zip(self.heads, self.placements):
            q_values, head_features = head(shared, training=False)
            placed.append(tf.matmul(q_values, placement))
            features.append(head_features)
        choose = tf.one_hot(game_id, len(self.heads), dtype=tf.float32)  # [B, G]
        logits = tf.einsum("bg,gbk->bk", choose, tf.stack(placed))
        features = tf.einsum("bg,gbh->bh", choose, tf.stack(features))
        return _masked_outputs(logits, features, self.masks, game_id)


def _write_atomically(module, signatures, path: str, metadata: dict) -> str:
    if os.path.exists(path):
        raise ExportError(f"{path} already exists; pick another version or remove it first")
    try:
        os.rename(_saved_beside(module, signatures, path, metadata), path)
    except OSError as error:
        raise ExportError(f"could not write SavedModel {path}: {error.strerror or error}") from None
    return path


def _saved_beside(module, signatures, path: str, metadata: dict, extra: str | None = None) -> str:
    """Saves ``module`` with its metadata asset (and a copy of the directory ``extra`` as its
    ``assets.extra``) into a temporary directory beside ``path``, synced; returns it. Nothing
    is left behind if this fails; temporaries of a killed export of ``path`` are removed."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        for stale in os.listdir(parent):  # left by an export that was killed
            if stale.startswith(f".tmp-{os.path.basename(path)}-"):
                shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
        tmp = os.path.join(parent, f".tmp-{os.path.basename(path)}-{os.getpid()}")
        try:
            tf.saved_model.save(module, tmp, signatures=signatures)
            faults.fault_point("export_write")
            faults.io_fault_point("export_write", tmp)
            os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
            with open(os.path.join(tmp, "assets", METADATA_FILE), "w") as handle:
                json.dump(metadata, handle, indent=2, sort_keys=True)
            if extra is not None and os.path.isdir(extra):
                shutil.copytree(extra, os.path.join(tmp, os.path.basename(extra)))
            for root, _, files in os.walk(tmp):
                for name in files:
                    with open(os.path.join(root, name), "rb") as f:
                        os.fsync(f.fileno())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as error:
        raise ExportError(f"could not write SavedModel {path}: {error.strerror or error}") from None
    return tmp


def rewrite_metadata(path: str, rewrite) -> bool:
    """Re-saves the SavedModel ``path`` with its metadata (the variable and the asset) replaced
    by ``rewrite(metadata)``, keeping its ``assets.extra``; every other variable and the serving
    outputs are checked unchanged before the new copy replaces the old one (two renames: a crash
    between them leaves the old copy beside it as ``.old-<version>-<pid>``). Returns False (and
    writes nothing) when ``rewrite`` changes nothing."""
    loaded = LoadedPolicy(path)
    metadata = rewrite(json.loads(json.dumps(loaded.metadata)))
    if metadata == loaded.metadata:
        return False
    before = _probe(loaded)
    loaded.module.metadata.assign(json.dumps(metadata))
    tmp = _saved_beside(loaded.module, {"serving_default": loaded.signature}, path, metadata,
                        extra=os.path.join(path, os.path.dirname(TEST_PLAY_FILE)))
    old = os.path.join(os.path.dirname(os.path.abspath(path)), f".old-{os.path.basename(path)}-{os.getpid()}")
    try:
        _check_same_weights(path, tmp)
        rewritten = LoadedPolicy(tmp)
        if rewritten.metadata != metadata or any(
                not np.array_equal(a, b) for a, b in zip(before, _probe(rewritten))):
            raise ExportError(f"re-saving {path} changed its outputs or lost its metadata; left unchanged")
        os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return True


def _probe(loaded) -> list:
    """The serving outputs of ``loaded`` for every game on fixed random frames."""
    frames = np.random.default_rng(0).integers(0, 256, (4, *envs.OBSERVATION_SHAPE), dtype=np.uint8)
    return [out.numpy() for game in loaded.games for _, out in sorted(loaded.outputs(frames, game).items())]


def _check_same_weights(path: str, other: str) -> None:
    """Raises ExportError unless the SavedModels ``path`` and ``other`` hold the same variables
    with the same values, the metadata variable aside."""
    readers = [tf.train.load_checkpoint(os.path.join(p, "variables", "variables")) for p in (path, other)]
    shapes = [{k: v for k, v in r.get_variable_to_shape_map().items()
               if not k.startswith(("metadata/", "_CHECKPOINTABLE_OBJECT_GRAPH"))} for r in readers]
    if shapes[0] != shapes[1] or any(
            not np.array_equal(readers[0].get_tensor(k), readers[1].get_tensor(k)) for k in shapes[0]):
        raise ExportError(f"re-saving {path} changed its variables; left unchanged")


def export_expert(model, game: str, path: str, provenance: dict, protocol: str, kind="expert") -> str:
    """Exports a DQN for one game to ``path`` atomically: a per-game network (one output
    per legal action) or an 18-way one (its legal outputs become ``q_values``)."""
    game = envs.canonical_game(game)
    legal = envs.legal_actions(game)
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "games": [game],
        "legal_actions": {game: legal.tolist()},
        "protocol": protocol,
        "feature_size": int(model.outputs[1].shape[-1]),
        "provenance": rundirs.portable_record(provenance),
    }
    module = _ExpertModule(networks.float32_copy(model), legal, metadata)
    return _write_atomically(module, {"serving_default": module.serve}, path, metadata)


def export_multitask(model, games: list, path: str, provenance: dict, protocol: str, kind="amn",
                     temperatures: dict | None = None):
    """Exports an 18-output multitask network (AMN) with a per-game action mask.
    ``temperatures``: game -> the tau of the expert it was distilled from (metadata "tau")."""
    games = [envs.canonical_game(g) for g in games]
    masks = np.stack([envs.legal_mask(g) for g in games])
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "games": games,
        "game_ids": {g: i for i, g in enumerate(games)},
        "legal_actions": {g: envs.legal_actions(g).tolist() for g in games},
        "protocol": protocol,
        "feature_size": int(model.outputs[1].shape[-1]),
        "provenance": rundirs.portable_record(provenance),
    }
    if temperatures is not None:
        metadata["tau"] = {envs.canonical_game(g): float(t) for g, t in temperatures.items()}
    module = _MultitaskModule(networks.float32_copy(model), masks, metadata)
    return _write_atomically(module, {"serving_default": module.serve}, path, metadata)


def export_multitask_dqn(torso, heads, games: list, path: str, provenance: dict, protocol: str):
    """Exports an MDQN/MCDQN with the AMN signature (``kind`` 'multitask_dqn')."""
    games = [envs.canonical_game(g) for g in games]
    metadata = {
        "format": FORMAT,
        "kind": "multitask_dqn",
        "games": games,
        "game_ids": {g: i for i, g in enumerate(games)},
        "legal_actions": {g: envs.legal_actions(g).tolist() for g in games},
        "protocol": protocol,
        "feature_size": int(heads[0].outputs[1].shape[-1]),
        "provenance": rundirs.portable_record(provenance),
    }
    module = _PerGameHeadsModule(networks.float32_copy(torso),
                                 [networks.float32_copy(h) for h in heads], games, metadata)
    return _write_atomically(module, {"serving_default": module.serve}, path, metadata)


def write_test_play(path: str, payload: dict) -> str:
    """Stores ``payload`` (the expert's and random play's results and the protocol they were
    played under) as ``<SavedModel>/assets.extra/test_play.json``, atomically."""
    target = os.path.join(path, TEST_PLAY_FILE)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        checkpoints.write_json_atomically(target, {"format": TEST_PLAY_FORMAT, **payload})
    except OSError as error:
        raise ExportError(f"could not write {target}: {error.strerror or error}") from None
    return target


def read_test_play(path: str) -> dict | None:
    """The test play stored in SavedModel ``path`` (``write_test_play``), or None if it has
    none; a SavedModelError if the file is there but unreadable or of another format."""
    target = os.path.join(path, TEST_PLAY_FILE)
    if not os.path.exists(target):
        return None
    try:
        with open(target) as handle:
            payload = json.load(handle)
    except (OSError, ValueError) as error:
        raise SavedModelError(f"{target} is unreadable ({type(error).__name__}: {error})") from None
    needed = ("game", "protocol", "epsilon", "max_steps", "expert", "random")
    if not isinstance(payload, dict) or payload.get("format") != TEST_PLAY_FORMAT or any(
            k not in payload for k in needed):
        raise SavedModelError(f"{target} is not a stored test play of format {TEST_PLAY_FORMAT}")
    return payload


def missing_directory(path: str) -> str | None:
    """Why ``path`` cannot be a SavedModel directory, in words for an error line ('does not
    exist', 'is a file, not a SavedModel directory'), or None when it is a directory."""
    if os.path.isdir(path):
        return None
    return "is a file, not a SavedModel directory" if os.path.exists(path) else "does not exist"


class LoadedPolicy:
    """A SavedModel written by this module, loaded with ``tf.saved_model.load``.

    ``q_or_logits(frames, game)`` returns ``[B, 18]`` values placed at ALE ids (illegal
    ids at -1e9), ``features(...)`` the last hidden layer, ``act`` greedy ALE ids.
    """

    def __init__(self, path: str):
        self.path = path
        missing = missing_directory(path)
        if missing:
            raise SavedModelError(f"no SavedModel at {path}: it {missing}")
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise SavedModelError(f"{path} is not a SavedModel (no saved_model.pb)")
        if not os.path.exists(os.path.join(path, "variables", "variables.index")):
            raise SavedModelError(f"SavedModel {path} is incomplete: variables/variables.index is missing")
        try:
            self.module = tf.saved_model.load(path)
            self.metadata = json.loads(self.module.metadata.numpy().decode())
            self.signature = self.module.signatures["serving_default"]
        except (AttributeError, KeyError, ValueError) as error:
            raise SavedModelError(f"{path} is not an amn_tf SavedModel ({type(error).__name__}: {error})") from None
        except Exception as error:  # noqa: BLE001 - TF raises many kinds for bad files
            raise SavedModelError(f"SavedModel {path} could not be loaded ({type(error).__name__}: {str(error).splitlines()[0]})") from None
        self._check_input_shape()
        self.kind = self.metadata["kind"]
        self.games = list(self.metadata["games"])
        self.protocol = self.metadata.get("protocol", "paper")
        self.multitask = "game_ids" in self.metadata
        self.feature_size = int(self.metadata["feature_size"])

    def _check_input_shape(self):
        spec = self.signature.structured_input_signature[1].get("frames")
        if spec is None or tuple(spec.shape[1:]) != envs.OBSERVATION_SHAPE or spec.dtype != tf.uint8:
            raise SavedModelError(
                f"SavedModel {self.path} takes frames {spec}, amn_tf needs uint8 [None, 84, 84, 4]"
            )

    def game_id(self, game: str) -> int:
        game = envs.canonical_game(game)
        if game not in self.games:
            raise SavedModelError(
                f"SavedModel {self.path} ({self.kind}) was trained on {', '.join(self.games)}, not {game}"
            )
        return self.games.index(game)

    def legal_actions(self, game: str) -> np.ndarray:
        self.game_id(game)
        return np.asarray(self.metadata["legal_actions"][envs.canonical_game(game)], np.int32)

    def outputs(self, frames, game: str) -> dict:
        frames = tf.convert_to_tensor(frames, tf.uint8)
        if self.multitask:
            ids = tf.fill([tf.shape(frames)[0]], self.game_id(game))
            return self.signature(frames=frames, game_id=ids)
        self.game_id(game)
        return self.signature(frames=frames)

    def values(self, frames, game: str) -> np.ndarray:
        """[B, 18] values at ALE ids (Q-values for experts, logits for the AMN)."""
        out = self.outputs(frames, game)
        if "logits" in out:
            return out["logits"].numpy()
        q = out["q_values"].numpy()
        full = np.full((q.shape[0], envs.NUM_ACTIONS), -1e9, np.float32)
        full[:, self.legal_actions(game)] = q
        return full

    def act(self, frames, game: str) -> np.ndarray:
        return self.outputs(frames, game)["action"].numpy()
