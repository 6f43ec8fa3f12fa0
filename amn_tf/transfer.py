"""Transfer: a DQN for a new game initialised from an AMN (or at random), then trained as
an ordinary DQN.

As in the authors' code: the whole AMN is copied, its trained 18-way output layer
included; the feature-regression heads are dropped (they are not part of the AMN
network); no layer is frozen; the target network starts as a copy. The target game's
legal-action mask applies to action choice and to the max in the TD target
(``dqn.action_tables`` for an 18-output network).
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from amn_tf import checkpoints, dqn, envs, export, networks, runtime
from amn_tf import config as config_lib

InitError = config_lib.InitError
parse_init = config_lib.parse_init
init_label = config_lib.init_label


def _amn_from_saved_model(path: str, network: str | None):
    try:
        loaded = export.LoadedPolicy(path)
    except export.SavedModelError as error:
        raise InitError(f"--init: {error}") from None
    if loaded.kind != "amn":
        raise InitError(f"--init: {path} is a {loaded.kind} SavedModel, not an AMN")
    kind = loaded.metadata.get("provenance", {}).get("network", network or "small")
    model = networks.build_network(kind, envs.NUM_ACTIONS, name="online")
    status = tf.train.Checkpoint(model=model).read(os.path.join(path, "variables", "variables"))
    try:
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError as error:
        raise InitError(f"--init: {path} does not hold a {kind} AMN ({str(error).splitlines()[0]})") from None
    return model, loaded.games, kind


def _amn_from_run_dir(path: str, network: str | None):
    info_path = os.path.join(path, "run.json")
    if not os.path.exists(info_path):
        raise InitError(f"--init: {path} is neither an AMN SavedModel nor an AMN run directory")
    with open(info_path) as handle:
        info = json.load(handle)
    if info.get("mode") != "amn":
        raise InitError(f"--init: {path} is a {info.get('mode')} run, not an AMN run")
    kind = info.get("network", network or "small")
    model = networks.build_network(kind, envs.NUM_ACTIONS, name="online")
    manager = checkpoints.CheckpointManager(os.path.join(path, "checkpoints"))
    candidates = manager.complete()
    if not candidates:
        raise InitError(f"--init: AMN run {path} has no complete checkpoint yet")
    status = tf.train.Checkpoint(amn=model).read(os.path.join(candidates[0], "weights"))
    status.expect_partial().assert_existing_objects_matched()
    return model, list(info["games"]), kind


def build_initial_network(init: str, game: str, network: str = "small"):
    """The online network of a transfer run and a description of where it came from."""
    kind, path = parse_init(init)
    if kind == "random":
        return networks.build_network(network, envs.NUM_ACTIONS, name="online"), {"init": "random"}
    if not os.path.isdir(path):
        raise InitError(f"--init: {path} does not exist")
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        model, games, architecture = _amn_from_saved_model(path, network)
    else:
        model, games, architecture = _amn_from_run_dir(path, network)
    if game in games:
        print(f"[transfer] warning: {game} is one of the AMN's source games ({', '.join(games)})")
    return model, {"init": "amn", "source": os.path.abspath(path), "source_games": games,
                   "network": architecture}


def train(config) -> dict:
    """``--mode=transfer``: DQN on ``config.dqn.game`` from ``config.init``."""
    runtime.set_precision(config.dqn.precision)
    runtime.set_seeds(config.dqn.seed, config.dqn.deterministic)
    model, origin = build_initial_network(config.init, config.dqn.game, config.network)
    # The run directory is made only once the init is known to be good.
    runtime.prepare_run_dir(config.dqn.run_dir, {"mode": "transfer", "game": config.dqn.game,
                                                 "init": config.init}, config_lib.resolved_flags())
    print(f"[transfer] {config.dqn.game} from {config.init} ({model.count_params():,} parameters)",
          flush=True)
    label = init_label(config.init)
    checkpoints.write_json_atomically(os.path.join(config.dqn.run_dir, "init.json"), origin)
    return dqn.train(config.dqn, network=model, export_kind="transfer",
                     export_name=f"{config.dqn.game}-{label}")


def initial_weights_equal(model_a, model_b) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(model_a.get_weights(), model_b.get_weights()))
