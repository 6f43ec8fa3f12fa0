"""Transfer: a DQN for a new game initialised from an AMN (or at random), then trained as
an ordinary DQN.

As in the authors' code: the whole AMN is copied, its trained 18-way output layer
included; the feature-regression heads are dropped (they are not part of the AMN
network); no layer is frozen; the target network starts as a copy. The target game's
legal-action mask applies to action choice and to the max in the TD target
(``policies.action_tables`` for an 18-output network).

``--init_output_layer`` changes only what the output layer starts as (an ablation of the
authors' choice): 'reinit' gives it the weights a random-init DQN of the same seed starts
with; 'rescale' multiplies its kernel and bias by one factor so that its mean spread
(best minus worst legal action's output) on random-play states of the target equals that
random-init DQN's. The outputs are linear in the kernel and bias, so the spread scales by
exactly that factor.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from amn_tf import (
    checkpoints,
    dqn_agent,
    envs,
    evaluation,
    export,
    networks,
    policies,
    rundirs,
    runner,
    runtime,
    seeds,
    tables,
)
from amn_tf.config import InitError, parse_init, setting_label, transfer_export_name

SPREAD_STATES = 1024  # random-play states of the target on which 'rescale' matches spreads


def _amn_from_saved_model(path: str, network: str | None):
    try:
        loaded = export.LoadedPolicy(path)
    except export.SavedModelError as error:
        raise InitError(f"--init: {error}") from None
    if loaded.kind != "amn":
        raise InitError(f"--init: {path} is not an AMN but a SavedModel of kind '{loaded.kind}'")
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


def build_initial_network(init: str, game: str, network: str = "small", output_layer: str = "keep",
                          protocol: str = "paper", seed: int = 0, backend: str = "vector"):
    """The online network of a transfer run and a description of where it came from.

    Call right after the run's seeds are set: the random-init network (``init='random'``, or
    the reference of ``output_layer`` 'reinit' and 'rescale') is the first network drawn, so
    it is the same network for the same seed whatever the init. ``protocol``, ``seed`` and
    ``backend`` only serve 'rescale': its spreads are measured on the target's random-play
    states seeded with the run's seed (as rank_sources' target states)."""
    kind, path = parse_init(init)
    if kind == "random" or output_layer != "keep":
        reference = networks.build_network(network, envs.NUM_ACTIONS, name="online")
    if kind == "random":
        if output_layer != "keep":
            raise InitError(f"--init_output_layer={output_layer} needs --init=amn:PATH")
        return reference, {"init": "random"}
    missing = export.missing_directory(path)
    if missing:
        raise InitError(f"--init: {path} {missing} (pass --init=amn:<AMN SavedModel version directory>)")
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        model, games, architecture = _amn_from_saved_model(path, network)
    else:
        model, games, architecture = _amn_from_run_dir(path, network)
    if game in games:
        print(f"[transfer] warning: {game} is one of the AMN's source games ({', '.join(games)})")
    origin = {"init": "amn", "source": rundirs.portable_record(path), "source_games": games,
              "network": architecture, "output_layer": output_layer}
    if output_layer == "reinit":
        _copy_output_layer(reference, model)
    elif output_layer == "rescale":
        states, _ = random_play_states(game, protocol, SPREAD_STATES, seed, backend)
        origin.update(rescale_output_layer(model, reference, states, envs.legal_actions(game)))
        print(f"[transfer] output layer rescaled by {origin['output_scale']:.4g}: mean action spread "
              f"{origin['spread_before']:.3f} -> {origin['spread_after']:.3f} (random init "
              f"{origin['spread_random_init']:.3f})", flush=True)
    return model, origin


def _copy_output_layer(source, target) -> None:
    if source.get_layer(networks.OUTPUT_LAYER).get_weights()[0].shape != \
            target.get_layer(networks.OUTPUT_LAYER).get_weights()[0].shape:
        raise InitError("--init_output_layer=reinit: the AMN's last hidden layer differs from "
                        "--amn_network's (give the AMN's own --amn_network)")
    target.get_layer(networks.OUTPUT_LAYER).set_weights(source.get_layer(networks.OUTPUT_LAYER).get_weights())


def action_spread(model, states, legal) -> float:
    """Mean over ``states`` of the best minus the worst of ``model``'s outputs for the
    ``legal`` actions."""
    outputs = np.asarray(model(states, training=False)[0], dtype=np.float64)[:, legal]
    return float(np.mean(outputs.max(axis=1) - outputs.min(axis=1)))


def rescale_output_layer(model, reference, states, legal) -> dict:
    """Scales ``model``'s output layer (kernel and bias alike) so its action spread on
    ``states`` equals ``reference``'s; returns the factor and the spreads."""
    before, wanted = action_spread(model, states, legal), action_spread(reference, states, legal)
    if not before > 0.0:
        raise InitError("--init_output_layer=rescale: the AMN's outputs do not differ between "
                        "the target's actions, there is no spread to rescale")
    scale = wanted / before
    layer = model.get_layer(networks.OUTPUT_LAYER)
    layer.set_weights([weights * scale for weights in layer.get_weights()])
    return {"output_scale": scale, "spread_before": before, "spread_random_init": wanted,
            "spread_after": action_spread(model, states, legal)}


def train(config) -> dict:
    """``--mode=transfer``: DQN on ``config.dqn.game`` from ``config.init``. The run directory
    is made only once the initial network is known to be good."""
    c = config.dqn
    info = {"mode": "transfer", "game": c.game, "init": config.init}
    if config.output_layer != "keep":
        info["output_layer"] = config.output_layer

    def initial_network():
        return build_initial_network(config.init, c.game, config.network, config.output_layer,
                                     c.env.protocol, c.seed, c.env.backend)

    def make_agent(prepared):
        model, origin = prepared
        print(f"[transfer] {c.game} from {config.init} ({model.count_params():,} parameters)", flush=True)
        checkpoints.write_json_atomically(os.path.join(c.run_dir, "init.json"), origin)
        name = transfer_export_name(c.game, setting_label(config.init, config.output_layer))
        return dqn_agent.DqnAgent(c, model, "transfer", name)

    return runner.launch(c.run_dir, info, c, dqn_agent.schedule(c), make_agent, prepare=initial_network,
                         replay_flags=rundirs.DQN_REPLAY_FLAGS)


def initial_weights_equal(model_a, model_b) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(model_a.get_weights(), model_b.get_weights()))


# ------------------------------------------------------------ targeted transfer
def random_play_states(game, protocol, count, seed, backend) -> tuple:
    """States from uniformly random play of ``game``, and the random policy's returns."""
    env = envs.make_env(game, 4, protocol, seed, backend)
    rng = np.random.default_rng(seed)
    states, returns = [], []
    try:
        obs = env.reset()
        step = 0
        while len(states) * 4 < count:
            result = env.step(envs.random_legal_actions(rng, env.legal_actions, 4))
            returns += [r for _, r, _ in result.episode_returns]
            obs = result.obs
            step += 1
            if step % 4 == 0:
                states.append(obs.copy())
    finally:
        env.close()
    return np.concatenate(states)[:count], returns


def _rank_row(model, game, source, index, target_features, random_mean, config) -> dict:
    """One source's zero-shot gain on the target and its feature overlap with it."""
    head = envs.legal_mask(source) & envs.legal_mask(game)
    source_states, _ = random_play_states(source, config.protocol, config.states,
                                          seeds.rank_states(config.seed, index), config.backend)
    source_features = model(source_states, training=False)[1].numpy().mean(0)
    overlap = float(np.dot(target_features, source_features)
                    / (np.linalg.norm(target_features) * np.linalg.norm(source_features) + 1e-8))
    if head.sum() < 2:
        score, gain = float("nan"), float("nan")
    else:
        result = evaluation.play(policies.amn_policy(model, head), game, config.protocol,
                                 config.episodes, config.epsilon, config.num_envs, config.max_steps,
                                 seeds.rank_zero_shot(config.seed, index), config.backend,
                                 progress=evaluation.PlayProgress(f"[rank_sources] {game}, {source}'s head"))
        score = result.mean
        gain = (score - random_mean) / (abs(random_mean) + 1.0)
    return {"source": source, "shared_actions": int(head.sum()), "zero_shot": score,
            "zero_shot_gain": gain, "feature_overlap": overlap}


def _rank(rows) -> list:
    """Rows sorted by the mean of their zero-shot-gain rank and feature-overlap rank."""
    gains = np.nan_to_num(np.asarray([r["zero_shot_gain"] for r in rows]), nan=-np.inf)
    overlaps = np.asarray([r["feature_overlap"] for r in rows])
    gain_rank = (-gains).argsort().argsort()
    overlap_rank = (-overlaps).argsort().argsort()
    for row, a, b in zip(rows, gain_rank, overlap_rank):
        row["rank_score"] = float(a + b) / 2.0
    return sorted(rows, key=lambda r: r["rank_score"])


def _print_ranking(rows, related, game, random_result, init) -> None:
    print(f"[rank_sources] target {game}: random play {random_result.mean:.1f} over "
          f"{random_result.episodes} episodes; AMN {init}")
    print("| rank | source | shared actions | zero-shot | gain vs random | feature overlap |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for position, row in enumerate(rows, 1):
        print(f"| {position} | {row['source']} | {row['shared_actions']} | {row['zero_shot']:.1f} | "
              f"{row['zero_shot_gain']:+.2f} | {row['feature_overlap']:.2f} |")
    if not related:
        print(f"[rank_sources] warning: no source game looks related to {game} (no positive "
              f"zero-shot gain together with feature overlap > {tables.RELATED_OVERLAP}): AMN initialisation may "
              "transfer negatively here (the paper's Robotank case); compare with --init=random")


def rank_sources(config) -> list:
    """``--mode=rank_sources``: how related is each of the AMN's source games to the target?

    Two signals, both measured before any training:
      * zero-shot gain: the target played by the AMN with the source's action head (its
        logits restricted to the actions legal in both games), against random play:
        (score - random) / (|random| + 1);
      * feature overlap: cosine similarity of the AMN's mean last-hidden activations on
        target states and on the source's states.
    Sources are ranked by the mean of their two ranks; a warning is printed when no
    source has both a positive zero-shot gain and an overlap above 0.5.
    """
    runtime.set_precision("float32")
    game = config.game
    model, origin = build_initial_network(config.init, game)
    if origin["init"] != "amn":
        raise InitError("--mode=rank_sources needs --init=amn:PATH")
    target_states, _ = random_play_states(game, config.protocol, config.states, config.seed, config.backend)
    target_features = model(target_states, training=False)[1].numpy().mean(0)
    random_result = evaluation.play(None, game, config.protocol, config.episodes, 1.0, config.num_envs,
                                    config.max_steps, config.seed, config.backend,
                                    progress=evaluation.PlayProgress(f"[rank_sources] {game}, random play"))
    rows = _rank([_rank_row(model, game, source, index, target_features, random_result.mean, config)
                  for index, source in enumerate(origin["source_games"])])
    related = tables.related_sources(rows)
    _print_ranking(rows, related, game, random_result, config.init)
    if config.output_json:
        checkpoints.write_json_atomically(config.output_json, {"target": game, "init": config.init,
                                                               "random": random_result.mean,
                                                               "ranking": rows,
                                                               "related": related, "warning": not related})
    return rows
