"""Every flag, its help text and validators, and the one place that reads them: ``build``
turns the parsed flags into the frozen config of the mode (``amn_tf/config.py``); the
resolved flags ride along in it (``flags``) for the run directory's ``flags.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os

from absl import flags

from amn_tf import envs, rundirs
from amn_tf.config import (
    OUTPUT_LAYERS,
    AmnConfig,
    ConfigError,
    DqnConfig,
    EnvConfig,
    EvalConfig,
    EvalRunConfig,
    FanOutConfig,
    MultitaskDqnConfig,
    RankConfig,
    ReportConfig,
    TransferConfig,
    parse_tau,
    setting_label,
)

MODES = ("dqn", "amn", "transfer", "rank_sources", "multitask_dqn", "eval", "report")
# The main job's budget in agent steps per game (README), with its one test play at the end.
MAIN_JOB_STEPS = 48_000

FLAGS = flags.FLAGS

# ------------------------------------------------------------------------ general
flags.DEFINE_enum("mode", None, MODES, "What to run: dqn (train an expert), amn (distill experts "
                  "into an Actor-Mimic Network), transfer (DQN on a new game from an AMN or random "
                  "init), rank_sources (which AMN sources relate to a target game), multitask_dqn (the "
                  "MDQN/MCDQN baselines), eval (play a SavedModel), report (tables and plots).")
flags.DEFINE_string("run_dir", None, "Directory of this run: checkpoints, TensorBoard logs, "
                    "resolved flags, evaluation history. Re-running the same command resumes it. "
                    "Default: runs/<mode>-<game(s)>.")
flags.DEFINE_integer("seed", 0, "Seed of the environments, exploration, replay sampling and "
                     "network initialisation.", lower_bound=0)
flags.DEFINE_enum("protocol", "paper", sorted(envs.PROTOCOLS), "Episode protocol: 'paper' (Nature "
                  "DQN: no sticky actions, 1..30 no-op starts, life loss terminal for learning) or "
                  "'machado' (sticky actions 0.25, no life-loss terminal).")
flags.DEFINE_enum("env_backend", "vector", list(envs.BACKENDS), "'vector': ale_py AtariVectorEnv "
                  "(C++ threads, fast); 'gym': gymnasium ALE/<Game>-v5 with AtariPreprocessing.")
flags.DEFINE_integer("num_envs", 4, "Parallel environments per game for acting.", lower_bound=1)
flags.DEFINE_boolean("deterministic", False, "TF op determinism and synchronous replay sampling: "
                     "same seed, same weights (slower).")
flags.DEFINE_integer("log_period", 10_000, "Agent steps between progress lines and train scalars.",
                     lower_bound=1)

# -------------------------------------------------------------------- DQN (experts)
flags.DEFINE_string("game", None, "Game to train or evaluate, e.g. Pong, space_invaders, ALE/Pong-v5.")
flags.DEFINE_integer("training_steps", 500_000, "Agent steps to train (x4 for frames).", lower_bound=1)
flags.DEFINE_integer("replay_capacity", 200_000, "Replay memory size in transitions (per game for "
                     "the AMN). The authors used 1M for experts, 100k per game for the AMN.",
                     lower_bound=16)
flags.DEFINE_integer("learning_starts", 20_000, "Agent steps of acting before the first update "
                     "(per game for the AMN).", lower_bound=0)
flags.DEFINE_integer("update_period", 4, "Agent steps between learner updates (per game for the AMN).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "DQN minibatch size.", lower_bound=1)
flags.DEFINE_integer("target_update_period", 2_000, "Agent steps between target-network copies.",
                     lower_bound=1)
flags.DEFINE_float("gamma", 0.99, "Discount factor.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("epsilon_start", 1.0, "Initial exploration rate.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("epsilon_end", 0.01, "Final exploration rate.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("epsilon_decay_steps", 250_000, "Agent steps of linear epsilon decay.",
                     lower_bound=1)
flags.DEFINE_enum("optimizer", "adam", ["adam", "rmsprop", "authors_adam"], "DQN optimizer: "
                  "'adam' (modern default), 'rmsprop' (the authors' DQN: centered, rho 0.95, eps "
                  "0.01; pair with --batch_loss=sum) or 'authors_adam' (their AMN Adam variant).")
flags.DEFINE_float("learning_rate", 1e-4, "DQN learning rate.", lower_bound=0.0)
flags.DEFINE_float("adam_epsilon", 1.5e-4, "Adam epsilon.", lower_bound=0.0)
flags.DEFINE_boolean("double_dqn", True, "Double DQN targets (online argmax, target value).")
flags.DEFINE_boolean("dueling", False, "A dueling head on the DQN (--mode=dqn): Q = V + A - mean(A), "
                     "value and advantages both linear in the last hidden layer (Wang et al. 2016).")
flags.DEFINE_float("reward_clip", 1.0, "Clip learning rewards to [-c, c]; 0 disables.", lower_bound=0.0)
flags.DEFINE_enum("batch_loss", "mean", ["mean", "sum"], "How the DQN's TD loss combines a "
                  "minibatch: 'mean' (modern default) or 'sum' (the authors' Lua code: their "
                  "gradient is summed over the batch, the scale their RMSProp epsilon 0.01 acts on; "
                  "flags/expert.flags).")
flags.DEFINE_integer("n_step", 1, "Steps of the bootstrapped return: r_0 + gamma r_1 + ... + gamma^(n-1) "
                     "r_(n-1) + gamma^n max Q(s_n) (1: the authors' one-step Q-learning; 3: the fast "
                     "expert recipe). Cut short at episode ends.", lower_bound=1, upper_bound=10)
flags.DEFINE_float("eval_epsilon", 0.05, "Exploration rate of test play.", lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_integer("eval_period", 100_000, "Agent steps between test plays during training.",
                     lower_bound=1)
flags.DEFINE_integer("eval_episodes", 8, "Completed episodes per test play (per game).", lower_bound=1)
flags.DEFINE_integer("eval_max_steps", 27_000, "Agent-step cap of each test-play "
                     "episode (27,000: 108k frames, the usual 30 minutes); a capped episode is "
                     "scored with its return so far and reported as capped.",
                     lower_bound=1)
flags.DEFINE_integer("eval_envs", 8, "Parallel environments for test play.", lower_bound=1)
flags.DEFINE_integer("checkpoint_period", 50_000, "Agent steps between checkpoints.", lower_bound=1)
flags.DEFINE_float("train_minutes", None, "dqn, amn, transfer, multitask_dqn: end the run (final test "
                   "play, export) once its training time, the run loop's wall clock less its test "
                   "plays, summed over invocations, reaches this many minutes, even short of its "
                   "step budget; rerunning with more minutes (or without) trains it on. A budget "
                   "in time: how many frames it buys depends on the machine.")
flags.DEFINE_boolean("save_replay", False, "Store replay contents in checkpoints (large); without "
                     "them a resumed run refills the memory before learning again.")
flags.DEFINE_boolean("keep_best", False, "--mode=dqn/transfer: also export the network at each test "
                     "play that beats the run's best so far, to <run_dir>/best/step-<N>/ (earlier "
                     "ones only while a kept checkpoint's timeline needs them); the run's own "
                     "export stays its last network. Select by it, "
                     "then score the snapshot on fresh episodes with --mode=eval.")
flags.DEFINE_string("export_dir", "saved_models", "Root of exported SavedModels "
                    "(<export_dir>/<kind>/<name>/<version>/).")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the learner step (measured slower on "
                     "2-core CPUs; try it on GPUs).")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"], "Compute precision of "
                  "the networks (variables stay float32). 'auto': mixed_bfloat16 where the CPU has "
                  "AVX512-BF16/AMX or a GPU is visible (measured 1.4x faster updates), else float32.")
flags.DEFINE_enum("distribution", "none", ["none", "mirrored"], "Learner strategy: 'none' (one "
                  "device) or 'mirrored' (tf.distribute.MirroredStrategy over --devices GPUs; each "
                  "takes a slice of every batch). DQN and AMN learners.")
flags.DEFINE_integer("devices", 2, "Devices for --distribution=mirrored.", lower_bound=1)
flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into this many logical devices (to try "
                     "--distribution=mirrored without GPUs, as the tests do).", lower_bound=1)
flags.DEFINE_list("profile_steps", None, "START,STOP: capture a TensorFlow profiler trace of "
                  "learner updates START..STOP-1 (counted over the run, after warm-up) into the "
                  "run's TensorBoard directory.")
flags.DEFINE_boolean("skip_nonfinite", False, "Skip updates whose loss or gradients are not finite "
                     "instead of stopping the run.")

# ----------------------------------------------------------------------------- AMN
flags.DEFINE_list("experts", ["saved_models/experts"], "Expert SavedModels: paths of versions, or "
                  "directories holding <Game>/<version>/ (the newest version of each game is taken).")
flags.DEFINE_list("games", None, "Subset of the experts' games to distill (default: every game "
                  "of --experts; with --experts left at the shipped directory, the paper's eight "
                  f"Table 1 source games, {','.join(envs.TABLE1_GAMES)}).")
flags.DEFINE_enum("amn_network", "small", ["small", "large"], "'small' (Nature DQN shape) or "
                  "'large' (the authors' transfer network).")
flags.DEFINE_string("tau", "auto", "Temperature of the experts' Boltzmann policies softmax(Q/tau): "
                    "a positive number (the same tau for every expert; 1.0 as the authors) or "
                    "'auto' (the default; measured against tau 1 in docs/results/main-job/): one "
                    "tau per expert, chosen on its held-out states so that the median over states "
                    "of its top-action probability max_a softmax(Q(s, legal)/tau)_a equals "
                    "--tau_target_top_probability (bisection on log tau, clamped to [0.001, 10]). "
                    "The taus are printed, kept in the run directory (temperatures.json) and in the exported AMN's metadata.")
flags.DEFINE_float("tau_target_top_probability", 0.5, "--tau=auto: the median top-action "
                   "probability of every expert's targets, in (1/|A|, 1) for A the game's legal "
                   "actions (higher: more peaked targets, smaller tau).")
flags.DEFINE_integer("held_out_states", 256, "amn: states per game the experts play at epsilon "
                     "0.05 at the start of a run (kept in its held_out.npz; a resumed run keeps its "
                     "set), on which --tau=auto is chosen and the AMN's agreement with each expert "
                     "is measured at every test play. Fewer start a run sooner and give coarser "
                     "figures.", lower_bound=4)
flags.DEFINE_float("beta", 0.0, "Weight of feature regression (0, the default: policy regression "
                   "only, as the paper's Table 1 AMN; the authors' transfer AMN used 0.01).")
flags.DEFINE_integer("batch_per_game", 8, "States from each game's replay per AMN update.")
flags.DEFINE_float("amn_epsilon", 0.1, "Constant exploration rate of the AMN's acting policy.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_enum("amn_actor", "student", ["student", "expert"], "Who plays to collect states: the "
                  "AMN itself (the paper's choice) or the expert.")
flags.DEFINE_integer("amn_expert_steps", 0, "With --amn_actor=student: agent steps per game at the "
                     "start during which each game's expert plays (epsilon-greedy at --amn_epsilon) "
                     "to collect states, then the AMN itself (expert-driven states early). 0: the "
                     "AMN plays from the start.", lower_bound=0)
flags.DEFINE_float("amn_learning_rate", 1e-3, "AMN Adam learning rate (at the start, with "
                   "--amn_learning_rate_end). 1e-3 taught the eight-game main job more per update "
                   "than 2.5e-4 (the recipe flagfiles' value) and 2e-3: docs/results/main-job/.",
                   lower_bound=0.0)
flags.DEFINE_float("amn_learning_rate_end", None, "AMN: decay the learning rate linearly from "
                   "--amn_learning_rate at the run's start to this at its end (its --amn_steps, or "
                   "its --train_minutes of training when that comes first). Unset: constant.",
                   lower_bound=0.0)
flags.DEFINE_enum("amn_optimizer", "adam", ["adam", "authors_adam"], "AMN optimizer: 'adam' (Keras "
                  "Adam, default) or 'authors_adam' (the authors' AMN update: beta1 = beta2 = 0.95, "
                  "epsilon 0.01 inside the root on a batch-summed gradient, no bias correction).")
flags.DEFINE_integer("amn_steps", MAIN_JOB_STEPS, "AMN training budget in agent steps per game (x4 for "
                     "frames; the default is the README's main job).", lower_bound=1)
flags.DEFINE_integer("amn_replay_capacity", 100_000, "AMN replay size per game, in transitions.",
                     lower_bound=16)
flags.DEFINE_integer("amn_learning_starts", 5_000, "Agent steps per game before the first AMN update.",
                     lower_bound=0)
flags.DEFINE_integer("amn_eval_period", MAIN_JOB_STEPS, "Agent steps per game between AMN test plays (the "
                     "default: one, at the end of the default budget).",
                     lower_bound=1)
flags.DEFINE_enum("amn_acting", "auto", ["auto", "thread", "inline"], "amn with --num_actors=0: where "
                  "the AMN plays. 'thread': in a background thread of this process (its own copy of "
                  "the AMN, given the learner's weights every --actor_sync_period updates), so the "
                  "emulators and the AMN's forward passes overlap the learner's updates (1.09x the "
                  "main job's frames per second of 'inline' on 2 cores, benchmarks/RESULTS.md). "
                  "'inline': between the learner's updates in its own thread, as a DQN plays (needed "
                  "by --deterministic and --amn_actor=expert). 'auto': 'thread' unless one of those is "
                  "set. With --amn_expert_steps the experts play their steps inline, then the thread "
                  "takes over.")
flags.DEFINE_integer("num_actors", 0, "amn: actor processes playing for the one learner (Ray actors, "
                     "so it needs --ray_address; 0: the learner's own process plays, see --amn_acting).",
                     lower_bound=0)
flags.DEFINE_integer("actor_sync_period", 100, "amn: learner updates between pushes of the AMN's "
                     "weights to the actors.", lower_bound=1)
flags.DEFINE_integer("actor_chunk_steps", 25, "amn: vector steps each actor plays per round trip "
                     "to the learner.", lower_bound=1)
flags.DEFINE_string("amn_name", None, "Name of the exported AMN (default: the run directory's name).")

# ------------------------------------------------------------------------ transfer
flags.DEFINE_string("init", "random", "transfer: 'random', or 'amn:PATH' with PATH an AMN SavedModel "
                    "(saved_models/amn/<name>/<version>) or an AMN run directory.")
flags.DEFINE_enum("init_output_layer", "keep", list(OUTPUT_LAYERS), "transfer from an AMN: what "
                  "happens to its trained 18-way output layer. 'keep' (the authors' transfer); "
                  "'reinit': replaced by the output layer a random-init DQN of the same --seed "
                  "starts with; 'rescale': kernel and bias multiplied by one factor so the mean "
                  "best-minus-worst spread of the target's legal actions on 1,024 random-play states "
                  "equals that random-init DQN's. The run and its export are labelled "
                  "<init>-<treatment> unless 'keep'.")

# ------------------------------------------------------------------- multitask DQN
flags.DEFINE_enum("multitask_network", "mdqn", ["mdqn", "mcdqn"], "multitask_dqn: 'mdqn' (one "
                  "shared Nature DQN, an output layer per game) or 'mcdqn' (shared convolutions, "
                  "an FC layer and output layer per game).")

# ------------------------------------------------------------------------- fan-out
flags.DEFINE_string("ray_address", None, "Fan runs out as Ray tasks: 'local' (start Ray here), "
                    "'auto' (the running cluster) or HOST:PORT. Without it nothing imports Ray. "
                    "With --mode=dqn --games=A,B each game trains in its own run directory; with "
                    "--mode=eval --saved_models=P,Q each SavedModel is evaluated; with --mode=amn "
                    "--num_actors=N the AMN's actors are Ray actors.")
flags.DEFINE_float("ray_cpus_per_task", 1.0, "CPUs Ray reserves per task (or per AMN actor).",
                   lower_bound=0.0)
flags.DEFINE_float("ray_gpus_per_task", 0.0, "GPUs (fractions allowed) Ray reserves per task "
                   "(or per AMN actor).",
                   lower_bound=0.0)
flags.DEFINE_integer("ray_max_retries", 3, "Retries of a task whose worker died (it resumes from "
                     "its checkpoint).", lower_bound=0)
flags.DEFINE_list("saved_models", None, "eval: several SavedModels to evaluate (fanned out with "
                  "--ray_address, else one after another).")

# ---------------------------------------------------------------------------- eval
flags.DEFINE_string("saved_model", None, "eval: path of a SavedModel version directory, or "
                    "of a finished training run's directory (evaluates what that run exported).")
flags.DEFINE_boolean("random_policy", False, "eval: play uniformly random legal actions instead "
                     "(the baseline every expert must beat).")
flags.DEFINE_string("output_json", None, "eval: also write the results to this JSON file.")
flags.DEFINE_boolean("store_test_play", False, "eval: of an expert SavedModel, also play uniformly "
                     "random on its game (same seed and episodes) and store both results with the "
                     "protocol in <SavedModel>/assets.extra/test_play.json; AMN and multitask runs "
                     "take their reference scores from it instead of playing the expert.")
flags.DEFINE_boolean("remeasure_experts", False, "amn, multitask_dqn: play every expert for its "
                     "reference score even where a matching stored test play exists.")


def _devices(values, batch: int, name: str) -> int:
    if values.distribution == "none":
        return 1
    if batch % values.devices:
        raise ConfigError(f"{name}={batch} does not split evenly over --devices={values.devices}")
    return values.devices


def _profile_steps(values, total_updates: int):
    if not values.profile_steps:
        return None
    try:
        start, stop = (int(v) for v in values.profile_steps)
    except ValueError:
        raise ConfigError(f"--profile_steps={','.join(values.profile_steps)}: give two integers "
                          "START,STOP (learner updates), e.g. --profile_steps=20,30") from None
    if not 0 <= start < stop:
        raise ConfigError(f"--profile_steps={start},{stop}: need 0 <= START < STOP")
    if stop > total_updates:
        raise ConfigError(f"--profile_steps={start},{stop} is outside the run: it makes only "
                          f"{total_updates} learner updates; lower STOP or train longer")
    return (start, stop)


def _env(values) -> EnvConfig:
    return EnvConfig(values.protocol, values.env_backend, values.num_envs, values.seed)


def _eval(values) -> EvalConfig:
    return EvalConfig(values.eval_epsilon, values.eval_episodes, values.eval_max_steps, values.eval_envs)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _require_finite(values) -> None:
    """Every float flag must be a finite number (``--beta=inf`` would fill the replay, then
    stop on a non-finite loss)."""
    for name, value in resolved_flags(values).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{name}={value} is not a finite number: give a real value")


def _from_flags(cls, values, renamed=None, **given):
    """``cls`` filled from the flag of each field's name (``renamed``: field -> flag name
    where they differ), ``given`` values first, and the resolved flags in ``flags``: each
    hyperparameter is spelled once in its flag and once in its dataclass."""
    renamed = renamed or {}
    fields = {}
    for field in dataclasses.fields(cls):
        if field.name in given:
            fields[field.name] = given[field.name]
        elif field.name == "flags":
            fields["flags"] = resolved_flags(values)
        elif field.name in ("env", "evaluation"):
            fields[field.name] = _env(values) if field.name == "env" else _eval(values)
        elif renamed.get(field.name, field.name) in values:
            fields[field.name] = getattr(values, renamed.get(field.name, field.name))
    return cls(**fields)


def _games(values) -> tuple:
    games = tuple(envs.canonical_game(g) for g in values.games)
    duplicates = sorted({g for g in games if games.count(g) > 1})
    _require(not duplicates, f"--games lists {', '.join(duplicates)} twice")
    return games


def _require_schedule(values) -> None:
    _require(values.epsilon_end <= values.epsilon_start,
             f"--epsilon_end={values.epsilon_end} is above --epsilon_start={values.epsilon_start}")
    _require(values.learning_starts < values.training_steps,
             f"--learning_starts={values.learning_starts} is not below --training_steps="
             f"{values.training_steps}: the run would never learn")


def _updates(values, steps: str, starts: str) -> int:
    return (getattr(values, steps) - getattr(values, starts)) // values.update_period


def build(values=None):
    """Builds the frozen config of ``values.mode`` from parsed flags (FLAGS by default)."""
    values = values or FLAGS
    _require(values.mode is not None, "--mode is required: one of " + ", ".join(MODES))
    _require_finite(values)
    if values.mode == "dqn" and values.games:
        return _build_dqn_fan_out(values)
    if values.mode == "dqn" and values.ray_address:
        return FanOutConfig("dqn", (build_single(values),), values.ray_address,
                            values.ray_cpus_per_task, values.ray_gpus_per_task, values.ray_max_retries)
    if values.mode == "eval" and values.saved_models:
        return _build_eval_fan_out(values)
    return build_single(values)


def _build_dqn_fan_out(values) -> FanOutConfig:
    _require(not values.game, "--game and --games exclude each other: --games trains one "
             "expert per game")
    jobs = []
    for game in _games(values):
        values.game = game  # build each game's config (flags.json: its game) the single way
        try:
            single = build_single(values)
        finally:
            values.game = None
        run_dir = os.path.join(values.run_dir, game) if values.run_dir else os.path.join("runs", f"dqn-{game}")
        jobs.append(dataclasses.replace(single, run_dir=run_dir))
    return FanOutConfig("dqn", tuple(jobs), values.ray_address, values.ray_cpus_per_task,
                        values.ray_gpus_per_task, values.ray_max_retries)


def _build_eval_fan_out(values) -> FanOutConfig:
    _require(values.saved_model is None, "--saved_model and --saved_models exclude each other")
    jobs = []
    for path in values.saved_models:
        values.saved_model = path
        try:  # the fan-out writes one JSON with every job's results, not each job
            jobs.append(dataclasses.replace(build_single(values), output_json=None))
        finally:
            values.saved_model = None
    return FanOutConfig("eval", tuple(jobs), values.ray_address, values.ray_cpus_per_task,
                        values.ray_gpus_per_task, values.ray_max_retries, values.output_json)


def build_single(values):
    """The config of one run of ``values.mode``."""
    _require(not values.keep_best or values.mode in ("dqn", "transfer"), "--keep_best is for "
             f"--mode=dqn and --mode=transfer (one game, one score per test play), not --mode="
             f"{values.mode}: drop it")
    _require(values.train_minutes is None or values.mode in ("dqn", "transfer", "amn", "multitask_dqn"),
             f"--train_minutes budgets a training, not --mode={values.mode}: drop it")
    _require(values.train_minutes is None or values.train_minutes > 0,
             f"--train_minutes={values.train_minutes} must be above 0 (or leave it out: no time budget)")
    builders = {"dqn": _build_dqn, "transfer": _build_dqn, "amn": _build_amn,
                "multitask_dqn": _build_multitask_dqn, "rank_sources": _build_rank,
                "eval": _build_eval, "report": _build_report}
    if values.mode not in builders:
        raise ConfigError(f"unknown mode {values.mode}")
    return builders[values.mode](values)


def _build_dqn(values):
    """``--mode=dqn`` and ``--mode=transfer`` (a DQN from an init)."""
    _require(values.game is not None, f"--mode={values.mode} needs --game (e.g. --game=Pong)")
    game = envs.canonical_game(values.game)
    _require_schedule(values)
    _require(values.batch_size <= values.replay_capacity,
             "--batch_size is larger than --replay_capacity")
    if values.mode == "transfer":
        _require(not values.dueling, "--dueling is for --mode=dqn: a transferred DQN has its "
                 "init's architecture; drop --dueling")
        _require(values.init_output_layer == "keep" or values.init.startswith("amn:"),
                 f"--init_output_layer={values.init_output_layer} treats an AMN's output layer: "
                 "give --init=amn:PATH, or drop it for --init=random")
        default_dir = _transfer_default_dir(game, setting_label(values.init, values.init_output_layer),
                                            values.seed)
    else:
        default_dir = os.path.join("runs", f"dqn-{game}")
    dqn_config = _from_flags(
        DqnConfig, values, game=game, run_dir=values.run_dir or default_dir,
        profile_steps=_profile_steps(values, _updates(values, "training_steps", "learning_starts")),
        devices=_devices(values, values.batch_size, "--batch_size"))
    if values.mode == "transfer":
        return TransferConfig(dqn_config, values.init, values.amn_network, values.init_output_layer)
    return dqn_config


def _transfer_default_dir(game: str, label: str, seed: int) -> str:
    """``runs/transfer-<Game>-<label>-seed<N>``. A run begun before labels stopped doubling the
    AMN prefix (``runs/transfer-Breakout-amn-amn-policy-seed0``) resumes where it is."""
    default_dir = os.path.join("runs", f"transfer-{game}-{label}-seed{seed}")
    older = os.path.join("runs", f"transfer-{game}-amn-{label}-seed{seed}")
    if label.startswith("amn") and not os.path.exists(default_dir) and rundirs.is_run_dir(older):
        print(f"[transfer] resuming {older}, named before init labels stopped doubling 'amn-' "
              f"(give --run_dir to start elsewhere)", flush=True)
        return older
    return default_dir


AMN_FLAGS = {"network": "amn_network", "epsilon": "amn_epsilon", "actor": "amn_actor",
             "actor_cpus": "ray_cpus_per_task", "actor_gpus": "ray_gpus_per_task",
             "expert_steps": "amn_expert_steps", "learning_rate": "amn_learning_rate",
             "learning_rate_end": "amn_learning_rate_end", "optimizer": "amn_optimizer",
             "steps_per_game": "amn_steps", "replay_capacity": "amn_replay_capacity",
             "learning_starts": "amn_learning_starts", "eval_period": "amn_eval_period",
             "name": "amn_name"}


def _build_amn(values):
    tau = parse_tau(values.tau)
    _require(0 < values.tau_target_top_probability < 1, "--tau_target_top_probability must be "
             f"in (0, 1), got {values.tau_target_top_probability}")
    _require(values.beta >= 0, f"--beta must be >= 0, got {values.beta}")
    _require(values.batch_per_game >= 1, f"--batch_per_game must be >= 1, got {values.batch_per_game}")
    _require(bool(values.experts), "--experts is empty: give SavedModel paths or a directory")
    games = _games(values) if values.games else None
    if games is None and not values["experts"].present:
        games = envs.TABLE1_GAMES  # the shipped directory also holds experts the paper did not distill
    _require(values.amn_learning_rate_end is None or values.amn_learning_rate_end <= values.amn_learning_rate,
             f"--amn_learning_rate_end={values.amn_learning_rate_end} is above --amn_learning_rate="
             f"{values.amn_learning_rate}: the schedule decays from the one to the other; give a smaller "
             "end, or leave it out for a constant rate")
    _require(values.amn_expert_steps == 0 or values.amn_actor == "student", "--amn_expert_steps "
             "hands the play from the expert to the AMN, but --amn_actor=expert has the expert play "
             "throughout: drop one of them")
    acting = _amn_acting(values)
    if values.num_actors:
        _require(values.amn_expert_steps == 0, "--amn_expert_steps needs --num_actors=0: the actors "
                 "play with the AMN from the start")
        _require(values.ray_address is not None, f"--num_actors={values.num_actors} needs "
                 "--ray_address (use --ray_address=local on one machine), or --num_actors=0 to "
                 "play in the learner's process")
        _require(values.amn_actor == "student", "--num_actors plays with the AMN: drop "
                 "--amn_actor=expert or use --num_actors=0")
        _require(not values.deterministic, "--deterministic needs --num_actors=0: actors "
                 "run asynchronously")
    else:
        _require(values.ray_address is None, "--mode=amn uses --ray_address only for its "
                 "actors: add --num_actors=N or drop --ray_address")
    return _from_flags(
        AmnConfig, values, AMN_FLAGS, experts=tuple(values.experts), games=games, tau=tau, acting=acting,
        profile_steps=_profile_steps(values, _updates(values, "amn_steps", "amn_learning_starts")),
        devices=_devices(values, values.batch_per_game, "--batch_per_game"))


def _amn_acting(values) -> str:
    """--amn_acting resolved: 'ray' (--num_actors), 'thread' or 'inline'; 'thread' where a
    flag needs the learner's own thread to play is refused in one line."""
    if values.num_actors:
        _require(values.amn_acting != "thread", "--amn_acting=thread plays in this process; "
                 f"--num_actors={values.num_actors} has Ray actors play instead: drop one of them")
        return "ray"
    needs_inline = [flag for flag, on in (("--deterministic", values.deterministic),
                                          ("--amn_actor=expert", values.amn_actor == "expert")) if on]
    _require(values.amn_acting != "thread" or not needs_inline, f"--amn_acting=thread cannot serve "
             f"{', '.join(needs_inline)}: the acting thread plays with the AMN, asynchronously; use "
             "--amn_acting=inline (or auto)")
    if values.amn_acting == "inline" or needs_inline:
        return "inline"
    return "thread"


def _build_multitask_dqn(values):
    _require(bool(values.games) and len(values.games) >= 2,
             "--mode=multitask_dqn needs --games with at least two games (e.g. --games=Pong,Boxing)")
    games = _games(values)
    _require_schedule(values)
    # Experts only give the % of expert column: the default directory is optional.
    experts = tuple(values.experts or ())
    if not values["experts"].present:
        experts = tuple(p for p in experts if os.path.isdir(p) and os.listdir(p))
    run_dir = values.run_dir or os.path.join("runs", f"{values.multitask_network}-{'-'.join(games)}")
    return _from_flags(
        MultitaskDqnConfig, values, {"network": "multitask_network", "steps_per_game": "training_steps",
                                     "name": "amn_name"},
        games=games, experts=experts, experts_required=values["experts"].present, run_dir=run_dir,
        profile_steps=_profile_steps(values, _updates(values, "training_steps", "learning_starts")))


def _build_rank(values):
    _require(values.game is not None, "--mode=rank_sources needs --game (the target)")
    _require(values.init.startswith("amn:"), "--mode=rank_sources needs --init=amn:PATH")
    return RankConfig(envs.canonical_game(values.game), values.init, values.protocol,
                      values.env_backend, values.seed, 512, values.eval_episodes,
                      values.eval_epsilon, values.eval_envs, values.eval_max_steps,
                      values.output_json)


def _build_eval(values):
    _require(values.saved_model is not None or values.random_policy,
             "--mode=eval needs --saved_model=PATH (or --random_policy with --game)")
    _require(not (values.saved_model and values.random_policy),
             "--saved_model and --random_policy exclude each other")
    if values.random_policy:
        _require(values.game is not None, "--random_policy needs --game")
    game = envs.canonical_game(values.game) if values.game else None
    saved_model = values.saved_model
    if saved_model and rundirs.is_run_dir(saved_model):
        try:  # a training run's directory: evaluate what that run exported
            saved_model = rundirs.run_export(saved_model)
        except rundirs.RunError as error:
            raise ConfigError(str(error)) from None
    _require(not values.store_test_play or saved_model,
             "--store_test_play needs --saved_model=PATH of an expert (not --random_policy)")
    return EvalRunConfig(saved_model, game, values.random_policy, _env(values),
                         _eval(values), values.output_json, values.seed, values.store_test_play)


def _build_report(values):
    for path in values.report_evals or ():
        _require(os.path.isfile(path), f"--report_evals: {path} does not exist (write it "
                 "with --mode=eval --saved_model=... --output_json=FILE)")
    for path in values.report_rankings or ():
        _require(os.path.isfile(path), f"--report_rankings: {path} does not exist (write it "
                 "with --mode=rank_sources --game=G --init=amn:PATH --output_json=FILE)")
    _require(not values.report_rankings or values.report_runs, "--report_rankings goes beside "
             "transfer runs: add --report_runs=DIR,... (their Table 2)")
    if values.report_rates:
        _require(values.report_per_minute, "--report_rates goes with --report_per_minute (the AMN "
                 "settings trained by step budgets whose minutes it gives)")
        _require(os.path.isfile(values.report_rates), f"--report_rates: {values.report_rates} does not "
                 "exist (measure the settings alone first: scripts/amn_sweep.sh rates)")
    reach_scores = []
    for text in values.report_reach_scores or ():
        try:
            reach_scores.append(float(text))
        except ValueError:
            raise ConfigError(f"--report_reach_scores: {text!r} is not a number (e.g. "
                              "--report_reach_scores=12,15)") from None
        _require(math.isfinite(reach_scores[-1]), f"--report_reach_scores: {text} is not finite")
    return ReportConfig(tuple(values.report_runs or ()), values.report_dir,
                        values.report_blocks, values.reach_score,
                        tuple(values.report_evals or ()), tuple(values.report_rankings or ()),
                        tuple(reach_scores), values.report_ablation, values.report_per_minute,
                        values.report_rates)


flags.DEFINE_list("report_runs", None, "report: run directories to tabulate (AMN runs, with their "
                  "experts' evaluations inside).")
flags.DEFINE_list("report_evals", None, "report: eval JSONs (--mode=eval --output_json) of "
                  "experts, random play and AMN/multitask SavedModels: Table 1 through the SavedModels.")
flags.DEFINE_list("report_rankings", None, "report: --mode=rank_sources JSONs (--output_json) of "
                  "the transfer runs' AMN inits: their prediction beside what Table 2's runs showed.")
flags.DEFINE_string("report_dir", "docs/results", "report: where the table (Markdown) and PNG go.")
flags.DEFINE_boolean("report_ablation", False, "report: with transfer runs, the transfer ablation "
                     "(ablation.md, ablation_curves.png): one row per setting (init and AMN "
                     "output-layer treatment, AMN tau and sources, target recipe, budget) against "
                     "random init of the same recipe, instead of Table 2.")
flags.DEFINE_boolean("report_per_minute", False, "report: with AMN runs of several settings trained "
                     "for the same minutes (--train_minutes, or step budgets: --report_rates), "
                     "amn_per_minute.md: per setting (the AMN flags "
                     "that differ from the first run's), its seeds' final test plays against the "
                     "experts: games at >= 80% of the expert, mean capped random-relative score.")
flags.DEFINE_string("report_rates", None, "report: with --report_per_minute, the rates JSON of "
                    "benchmarks/amn_rate.py (each setting's frames/s measured alone): runs trained "
                    "by a step budget read their minutes from their setting's rate, not their clock.")
flags.DEFINE_integer("report_blocks", 4, "report: blocks of frames in Table 2 (transfer).", lower_bound=1)
flags.DEFINE_list("report_reach_scores", None, "report: expert recipes compared (several "
                  "dqn runs of one game): scores whose first test play each recipe is timed to, "
                  "in frames and learner updates (default: 90% of the best recipe's last test play).")
flags.DEFINE_float("reach_score", None, "report: score whose first reaching Table 2 reports, in "
                   "frames (default: half the random-init runs' final score, mean over seeds; "
                   "without random-init runs, half the best final score among the inits).")


def resolved_flags(values=None) -> dict:
    """Every flag of amn_tf with its value, for writing into run directories."""
    values = values or FLAGS
    names = [f.name for module, defined in values.flags_by_module_dict().items()
             if "amn_tf" in module or module.endswith("cli.py") for f in defined]
    return {name: getattr(values, name) for name in sorted(set(names))}
