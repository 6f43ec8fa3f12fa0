"""What the report reads, as small typed records: a run's kept records (``run.json``,
``flags.json``, ``flags_history.jsonl``, ``experts.json``, ``eval.jsonl``: the files
``scripts/keep_records.sh`` keeps), eval JSONs (``--mode=eval --output_json``) and
``--mode=rank_sources --output_json`` rankings.

Each record also reads as the dict it replaced (``run["points"]``, ``item.get("run_dir")``), and
every table takes such dicts too (``of``): hand-made runs in tests, payloads built in a script.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping

from amn_tf import config as config_lib
from amn_tf import jsonl, rundirs, tables

# The flags that make a DQN recipe: runs of one game whose values agree on all of them are
# seeds of one recipe (budget, seed, paths, test-play and bookkeeping flags are not part of it).
RECIPE_FLAGS = ("protocol", "num_envs", "replay_capacity", "learning_starts", "update_period",
                "batch_size", "n_step", "target_update_period", "gamma", "epsilon_start",
                "epsilon_end", "epsilon_decay_steps", "optimizer", "learning_rate", "adam_epsilon",
                "double_dqn", "dueling", "reward_clip", "batch_loss", "precision")
RECIPE_DEFAULTS = rundirs.LATER_FLAGS  # runs recorded before a flag existed read as its old meaning


class Record(Mapping):
    """A dataclass that also reads as the dict it replaced: ``record["name"]``,
    ``record.get("run_dir")``, ``dict(record, results=...)`` (its fields are its keys)."""

    def __getitem__(self, key):
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def of(cls, item):
        """``item`` itself if it is one, else the record of its keys (a dict with the fields)."""
        if isinstance(item, cls):
            return item
        names = cls._names()
        return cls(**{key: value for key, value in item.items() if key in names})


@dataclasses.dataclass
class AmnRun(Record):
    """An AMN or multitask DQN run: its experts' reference scores (``experts.json``, with random
    play's mean where it was measured) and its test plays (one record per test play, per game)."""

    name: str
    kind: str  # AMN, MDQN or MCDQN
    experts: dict
    history: list
    flags: dict = dataclasses.field(default_factory=dict)  # flags.json ({} where it is not kept)

    @property
    def final(self) -> dict:
        return self.history[-1]


@dataclasses.dataclass
class DqnRun(Record):
    """What every DQN run's report reads (expert or transfer): game, seed, recipe
    (``RECIPE_FLAGS``), test plays as (frames, mean) points and as the records themselves."""

    name: str
    game: str
    seed: int
    recipe: dict
    points: list
    history: list
    dir: str = ""


@dataclasses.dataclass
class TransferRun(DqnRun):
    init: str = "random"  # the setting label: init and output-layer treatment


@dataclasses.dataclass
class ExpertRun(DqnRun):
    label: str = ""  # the recipe's name: the directory name without -seed<N>
    recipe_changes: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class EvalResult(Record):
    """One eval payload: who played (``expert``, ``random`` or ``<name>/<version>``) and the
    per-game results; the run that trained the SavedModel, where the payload names it."""

    name: str
    results: dict
    path: str = ""
    run_dir: str | None = None
    frames_trained: int | None = None
    episodes: dict | None = None  # {stream, seed, emulator_seed}: which episodes it played


@dataclasses.dataclass
class Ranking(Record):
    """A rank_sources ranking: target game, init label (as Table 2 names the init), sources."""

    game: str
    init: str
    ranking: list
    path: str = ""


def run_name(run_dir: str) -> str:
    return os.path.basename(os.path.normpath(run_dir))


def without_seed(name: str) -> str:
    """A run's name without a trailing ``-seed<N>``: its recipe or setting."""
    return re.sub(r"-seed[0-9]+$", "", name)


def _json(path: str):
    with open(path) as handle:
        return json.load(handle)


def run_mode(run_dir: str) -> str:
    path = os.path.join(run_dir, "run.json")
    if not os.path.exists(path):
        raise config_lib.ConfigError(f"{run_dir} is not an amn_tf run directory (no run.json)")
    return _json(path).get("mode", "?")


def load_run(run_dir: str) -> AmnRun:
    experts_path = os.path.join(run_dir, "experts.json")
    history = jsonl.read(os.path.join(run_dir, "eval.jsonl"))
    if not os.path.exists(experts_path) or not history:
        raise config_lib.ConfigError(
            f"{run_dir} is not an AMN run with evaluations (needs experts.json and eval.jsonl)")
    info = _json(os.path.join(run_dir, "run.json"))
    kind = "AMN" if info.get("mode") == "amn" else info.get("network", "?").upper()
    flags_path = os.path.join(run_dir, "flags.json")
    flags = _json(flags_path) if os.path.exists(flags_path) else {}
    return AmnRun(run_name(run_dir), kind, _json(experts_path), history, flags)


def _dqn_records(run_dir: str, kind: str, plays: str) -> tuple:
    """``run.json``, ``flags.json`` and the test plays of a DQN run (expert or transfer); a run
    without any test play is refused as "<kind> run <dir> has no <plays> yet"."""
    info = _json(os.path.join(run_dir, "run.json"))
    history = jsonl.read(os.path.join(run_dir, "eval.jsonl"))
    if not history:
        raise config_lib.ConfigError(f"{kind} run {run_dir} has no {plays} yet")
    flags = _json(os.path.join(run_dir, "flags.json"))
    fields = {"game": info["game"], "seed": flags.get("seed", 0),
              "recipe": {key: flags.get(key, RECIPE_DEFAULTS.get(key)) for key in RECIPE_FLAGS},
              "points": [(r["frames"], r["mean"]) for r in history], "history": history}
    return info, fields


def load_transfer_run(run_dir: str) -> TransferRun:
    info, fields = _dqn_records(run_dir, "transfer", "evaluations")
    init = config_lib.setting_label(info["init"], info.get("output_layer", "keep"))
    return TransferRun(name=f"{init}-seed{fields['seed']}", dir=run_dir, init=init, **fields)


def load_dqn_run(run_dir: str) -> ExpertRun:
    """An expert DQN run: its game, recipe (``RECIPE_FLAGS`` from ``flags.json``), seed and
    test plays; its label is the directory name without a trailing ``-seed<N>``."""
    _, fields = _dqn_records(run_dir, "expert", "test plays")
    name = run_name(run_dir)
    return ExpertRun(name=name, dir=run_dir, label=without_seed(name),
                     recipe_changes=rundirs.flag_changes(run_dir, RECIPE_FLAGS, RECIPE_DEFAULTS),
                     **fields)


def _named_eval(payload: dict, path: str) -> EvalResult:
    """Who played one eval payload: ``expert``, ``random`` or ``<name>/<version>`` (from the
    SavedModel path ``<kind dir>/<name>/<version>``, e.g. amn/amn-cpu/1 -> amn-cpu/1)."""
    results = {r["game"]: r for r in payload["results"]}
    if payload.get("random_policy"):
        return EvalResult("random", results, path)
    parts = os.path.normpath(payload.get("saved_model") or path).split(os.sep)
    # JSONs written before eval payloads carried "kind": experts live under experts/
    if (payload.get("kind") or ("expert" if "experts" in parts else "amn")) == "expert":
        name = "expert"
    else:
        name = "/".join(parts[-2:]) if len(parts) >= 2 and parts[-1].isdigit() else parts[-1]
    return EvalResult(name, results, path, payload.get("run_dir"), payload.get("frames_trained"),
                      payload.get("episodes"))


def load_eval(path: str) -> list:
    """An ``--mode=eval --output_json`` file (one payload, or a list from a fan-out eval):
    who played and the per-game results, one entry per payload."""
    try:
        payload = _json(path)
        return [_named_eval(p, path) for p in (payload if isinstance(payload, list) else [payload])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise config_lib.ConfigError(
            f"{path} is not an eval JSON (write one with --mode=eval --output_json=FILE): {error}"
        ) from None


def load_ranking(path: str) -> Ranking:
    """A ``--mode=rank_sources --output_json`` file as target game, init label (as Table 2
    names the init) and the ranked sources."""
    try:
        payload = _json(path)
        ranking = payload["ranking"]
        tables.related_sources(ranking)  # every row has the fields the prediction uses
        return Ranking(payload["target"], config_lib.init_label(payload["init"]), ranking, path)
    except (OSError, ValueError, KeyError, TypeError, config_lib.ConfigError) as error:
        raise config_lib.ConfigError(f"--report_rankings: {path} is not a --mode=rank_sources "
                                     f"--output_json file ({error})") from None
