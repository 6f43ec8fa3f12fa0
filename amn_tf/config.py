"""The frozen run configurations every mode takes, the errors of bad input, and the small
parsers of flag values (``--tau``, ``--init``) that modes and reports share.

Nothing here reads a flag: ``amn_tf/cli.py`` defines the flags and builds these from them
once, in the entry point. Units: every schedule and budget counts *agent steps* (one agent
step = 4 emulator frames); progress lines and tables also print frames.
"""

from __future__ import annotations

import dataclasses
import math
import os


class ConfigError(ValueError):
    """A bad flag value or combination; the message says how to fix it."""


def parse_tau(text) -> float | str:
    """``--tau``: 'auto', or a positive finite number (as a float)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--tau={text!r}: give a positive number (e.g. --tau=0.1) or 'auto' "
                          "(one tau per expert, from its action gaps)") from None
    if not math.isfinite(value):
        raise ConfigError(f"--tau={text} is not a finite number: give a positive number or 'auto'")
    if value <= 0:
        raise ConfigError(f"--tau must be > 0, got {value}")
    return value


class InitError(ConfigError):
    """An --init that does not name a usable AMN."""


def parse_init(init: str) -> tuple:
    """'random' -> ('random', None); 'amn:PATH' -> ('amn', PATH)."""
    if init == "random":
        return "random", None
    if init.startswith("amn:") and len(init) > 4:
        return "amn", init[4:]
    raise InitError(f"--init={init!r}: use 'random' or 'amn:PATH' (an AMN SavedModel or AMN run directory)")


def init_label(init: str) -> str:
    kind, path = parse_init(init)
    if kind == "random":
        return "random"
    name = os.path.normpath(path)
    parts = name.split(os.sep)
    # saved_models/amn/<name>/<version> -> <name>; runs/<name> -> <name>
    label = parts[-2] if parts[-1].isdigit() and len(parts) > 1 else parts[-1]
    return _amn_label(label)


OUTPUT_LAYERS = ("keep", "reinit", "rescale")


def setting_label(init: str, output_layer: str = "keep") -> str:
    """A transfer run's label: the init's, with the output-layer treatment after it unless it
    is 'keep' (``amn-policy``, ``amn-policy-rescale``, ``random``)."""
    label = init_label(init)
    return label if output_layer == "keep" else f"{label}-{output_layer}"


def _amn_label(name: str) -> str:
    """An AMN's name as an init label: ``amn-`` in front unless the name starts with it already
    (``amn/amn-policy/1`` -> ``amn-policy``, ``runs/cpu`` -> ``amn-cpu``)."""
    return name if name.startswith("amn") else f"amn-{name}"


def transfer_export_name(game: str, label: str) -> str:
    """``saved_models/transfer/<Game>-<init label>/``; ``transfer_label`` reverses it."""
    return f"{game}-{label}"


def transfer_label(export_name: str, game: str) -> str | None:
    """The init label of a transfer export named for ``game``, else None. Exports made before
    labels stopped doubling the prefix (``Breakout-amn-amn-policy``) read as today's label."""
    prefix = transfer_export_name(game, "")
    if not export_name.startswith(prefix):
        return None
    label = export_name[len(prefix):]
    return _amn_label(label[len("amn-"):]) if label.startswith("amn-") else label


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    protocol: str
    backend: str
    num_envs: int
    seed: int


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    epsilon: float
    episodes: int
    max_steps: int
    num_envs: int


@dataclasses.dataclass(frozen=True)
class DqnConfig:
    game: str
    run_dir: str
    env: EnvConfig
    evaluation: EvalConfig
    training_steps: int
    replay_capacity: int
    learning_starts: int
    update_period: int
    batch_size: int
    target_update_period: int
    gamma: float
    epsilon_start: float
    epsilon_end: float
    epsilon_decay_steps: int
    optimizer: str
    learning_rate: float
    adam_epsilon: float
    double_dqn: bool
    dueling: bool
    reward_clip: float
    n_step: int
    batch_loss: str
    eval_period: int
    checkpoint_period: int
    save_replay: bool
    export_dir: str
    log_period: int
    jit_compile: bool
    precision: str
    deterministic: bool
    skip_nonfinite: bool
    profile_steps: tuple | None
    distribution: str
    devices: int
    seed: int
    keep_best: bool = False  # a SavedModel of the best test play so far in <run_dir>/best/
    train_minutes: float | None = None  # end the run once its training time reaches this
    flags: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # resolved, for flags.json


@dataclasses.dataclass(frozen=True)
class AmnConfig:
    experts: tuple
    games: tuple | None
    run_dir: str | None
    env: EnvConfig
    evaluation: EvalConfig
    network: str
    tau: float | str  # a positive number, or "auto" (one per expert, see amn_tf/temperature.py)
    beta: float
    batch_per_game: int
    epsilon: float
    actor: str
    num_actors: int  # 0: in-process acting; else Ray actors at ray_address
    acting: str  # --amn_acting resolved: 'thread' (after any expert_steps, played inline), 'inline' or 'ray'
    ray_address: str | None
    actor_sync_period: int
    actor_chunk_steps: int
    actor_cpus: float
    actor_gpus: float
    learning_rate: float
    optimizer: str
    steps_per_game: int
    replay_capacity: int
    learning_starts: int
    update_period: int
    eval_period: int
    checkpoint_period: int
    save_replay: bool
    export_dir: str
    name: str | None
    log_period: int
    jit_compile: bool
    precision: str
    deterministic: bool
    skip_nonfinite: bool
    profile_steps: tuple | None
    distribution: str
    devices: int
    seed: int
    tau_target_top_probability: float = 0.5  # with tau "auto"
    remeasure_experts: bool = False  # play the experts even where a test play is stored
    train_minutes: float | None = None  # end the run once its training time reaches this
    expert_steps: int = 0  # agent steps per game the experts play before the AMN (actor "student")
    learning_rate_end: float | None = None  # linear decay to this over the run (None: constant)
    held_out_states: int = 256  # expert states per game for --tau=auto and the agreement figure
    flags: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # resolved, for flags.json


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    dqn: DqnConfig
    init: str
    network: str  # architecture of a random init (an AMN init brings its own)
    output_layer: str = "keep"  # the AMN's output layer at transfer: keep, reinit or rescale


@dataclasses.dataclass(frozen=True)
class MultitaskDqnConfig:
    games: tuple
    network: str
    experts: tuple  # for % of expert; empty: no comparison
    experts_required: bool  # --experts given: a missing expert is an error, else no comparison
    run_dir: str
    env: EnvConfig
    evaluation: EvalConfig
    steps_per_game: int
    replay_capacity: int
    learning_starts: int
    update_period: int
    batch_per_game: int
    target_update_period: int
    gamma: float
    epsilon_start: float
    epsilon_end: float
    epsilon_decay_steps: int
    optimizer: str
    learning_rate: float
    adam_epsilon: float
    double_dqn: bool
    reward_clip: float
    n_step: int
    eval_period: int
    checkpoint_period: int
    save_replay: bool
    export_dir: str
    name: str | None
    log_period: int
    precision: str
    deterministic: bool
    skip_nonfinite: bool
    profile_steps: tuple | None
    seed: int
    remeasure_experts: bool = False  # play the experts even where a test play is stored
    train_minutes: float | None = None  # end the run once its training time reaches this
    flags: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # resolved, for flags.json


@dataclasses.dataclass(frozen=True)
class FanOutConfig:
    kind: str  # 'dqn' or 'eval'
    jobs: tuple  # DqnConfig (each with its own flags) or EvalRunConfig
    ray_address: str | None
    cpus_per_task: float
    gpus_per_task: float
    max_retries: int
    output_json: str | None = None  # eval fan-out: every job's results in one file


@dataclasses.dataclass(frozen=True)
class RankConfig:
    game: str
    init: str
    protocol: str
    backend: str
    seed: int
    states: int
    episodes: int
    epsilon: float
    num_envs: int
    max_steps: int
    output_json: str | None


@dataclasses.dataclass(frozen=True)
class EvalRunConfig:
    saved_model: str | None
    game: str | None
    random_policy: bool
    env: EnvConfig
    evaluation: EvalConfig
    output_json: str | None
    seed: int
    store_test_play: bool = False  # expert and random play kept in the SavedModel


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    run_dirs: tuple
    output_dir: str
    blocks: int = 4
    reach_score: float | None = None
    evals: tuple = ()  # --mode=eval --output_json files: Table 1 through the SavedModels
    rankings: tuple = ()  # --mode=rank_sources --output_json files: beside Table 2's runs
    reach_scores: tuple = ()  # expert recipes: scores whose first test play the table times
    ablation: bool = False  # transfer runs: the ablation table (one row per setting) instead of Table 2
    per_minute: bool = False  # AMN runs: amn_per_minute.md, settings trained for the same minutes
    rates: str | None = None  # with per_minute: benchmarks/amn_rate.py's JSON, for step-budget runs

