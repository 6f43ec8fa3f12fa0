"""Every random stream a run derives from ``--seed``, named in one place so that no two
collide: game ``i``'s emulators, its test plays, ``--mode=eval``'s episodes, the experts'
reference plays and held-out states, the AMN's actors (Ray actors or its acting thread).

An emulator seed names an episode: a batch of ``n`` emulators seeded ``s`` seeds them
``s, s + 1, ..., s + n - 1`` (ALE's vector env and the gym back end alike), and ALE's vector
env refuses a seed past ``2**31 - 1``. So every stream owns a **block** of ``BLOCK`` (64)
consecutive emulator seeds, and each purpose owns a disjoint range of blocks inside
``[0, 2**31)``, laid out by mixed radix (``%`` keeps each coordinate in its range):

    test_play(seed, k, i)      TEST_PLAY_START + 64 (((seed % 256) 32 + i % 32) 1024 + k % 1024)
    emulators(seed, i, step)   EMULATORS_START + 64 (((seed % 256) 32 + i % 32) 1021 + step % 1021)
    actor(seed, k)             ACTORS_START + 32768 ((seed % 256) 64 + k % 64)
    eval_play(seed)            EVAL_START + 64 (seed % 65536)
    expert_play, held_out, random_play, rank_states, rank_zero_shot (seed, i)
                               <its start> + 64 ((seed % 256) 32 + i % 32)

with the ranges (emulator seeds):

    [0, 2**22)               --seed used as is (transfer.py's target states, rank_sources' random play)
    [2**22, 2**23)           EVAL: --mode=eval (and --store_test_play's expert and random play)
    [2**23, 2**24)           EXPERT_PLAY, HELD_OUT, RANDOM_PLAY, RANK_STATES, RANK_ZERO_SHOT (2**19 each)
    [2**29, 2**30)           TEST_PLAY: the k-th test play of game i during training
    [2**30, 2**30 + 2**29)   EMULATORS: game i's acting emulators, restarted at ``step``
    [2**30 + 2**29, 2**31)   ACTORS: the AMN's actor k, Ray or thread (actors.py seeds its game i at + 1000 i)

So distinct (purpose, seed, game index, k) give disjoint blocks for ``--seed`` 0..255, game
indices 0..31, test plays 0..1023, Ray actors 0..63 and ``--num_envs`` / ``--eval_envs`` up to
64; ``--mode=eval`` keeps ``--seed`` 0..65535 apart. Outside those ranges a coordinate wraps
(``--seed=256`` plays ``--seed=0``'s episodes). Emulator restarts (deterministic runs restart
every game's episodes at each checkpoint, seeded by the step) take slot ``step % 1021``:
1021 is prime, so the restarts at multiples of any checkpoint period that is not a multiple
of 1021 stay apart for the first 1021 of them.

**Fresh episodes for a chosen model**: ``--mode=eval`` plays from ``eval_play(--seed)``,
a range no training test play reaches, so scoring a ``--keep_best`` snapshot (or the best of
several models) with ``--mode=eval`` never replays the episodes that chose it. Choosing among
models by ``--mode=eval`` scores and then scoring the winner needs a second ``--seed``.

Each function is plain integer arithmetic: Python ints in, a Python int out (and numpy
arrays elementwise, which is how the tests cover the whole grid).

``replay`` (``seed + game index``) and a test play's exploration generator (its first
emulator seed + ``TEST_PLAY_EXPLORATION``) seed numpy generators, not emulators, and are
outside this layout.

Streams derived before this layout (``seed + 1 + 31 k + i`` for test plays, ``seed + 1000 i
+ step`` for emulators, ``--seed`` as is for ``--mode=eval``) made the published records;
those stay as they were played.
"""

from __future__ import annotations

MAX_SEED = 2**31  # ALE's vector env takes seeds below 2**31 (its C++ ints)
BLOCK = 64  # emulator seeds one stream owns: --num_envs / --eval_envs up to 64 stay apart
SEEDS = 256  # --seed values apart (seed % 256)
EVAL_SEEDS = 65536  # --mode=eval's --seed values apart
GAMES = 32  # game indices apart
TEST_PLAYS = 1024  # test plays per run apart
RESTARTS = 1021  # prime: emulator restart slots (step % 1021)
ACTORS = 64  # Ray actors per run apart
ACTOR_SPAN = 32768  # emulator seeds of one actor: game i's at + 1000 i (actors.py), 32 games of up to 1000 envs

EVAL_START = 2**22
PER_GAME_START = 2**23  # expert play, held-out states, random play, rank_sources' plays
PER_GAME_SIZE = SEEDS * GAMES * BLOCK  # 2**19
TEST_PLAY_START = 2**29
EMULATORS_START = 2**30
ACTORS_START = 2**30 + 2**29

TEST_PLAY_EXPLORATION = 7919  # a test play whose emulators are seeded s explores with numpy seed s + 7919

PURPOSES = ("eval", "expert_play", "held_out", "random_play", "rank_states", "rank_zero_shot",
            "test_play", "emulators", "actor")


def _cell(seed: int, game_index: int) -> int:
    """(seed, game) as one index of ``SEEDS * GAMES``."""
    return (seed % SEEDS) * GAMES + game_index % GAMES


def emulators(seed: int, game_index: int, step: int = 0) -> int:
    """First emulator seed of game ``game_index``'s acting emulators, (re)started at ``step``."""
    return EMULATORS_START + BLOCK * (_cell(seed, game_index) * RESTARTS + step % RESTARTS)


def test_play(seed: int, plays_so_far: int, game_index: int = 0) -> int:
    """First emulator seed of the training run's test play number ``plays_so_far`` of game
    ``game_index`` (the episodes that pick ``--keep_best`` snapshots)."""
    return TEST_PLAY_START + BLOCK * (_cell(seed, game_index) * TEST_PLAYS + plays_so_far % TEST_PLAYS)


def eval_play(seed: int) -> int:
    """First emulator seed of ``--mode=eval --seed=seed``: every game it plays starts from
    the same seeds, so two models' scores on a game come from the same episode starts; no
    training test play reaches this range."""
    return EVAL_START + BLOCK * (seed % EVAL_SEEDS)


def _per_game(purpose_index: int, seed: int, game_index: int) -> int:
    return PER_GAME_START + purpose_index * PER_GAME_SIZE + BLOCK * _cell(seed, game_index)


def expert_play(seed: int, game_index: int) -> int:
    """The expert of game ``game_index`` played for its reference score before distillation."""
    return _per_game(0, seed, game_index)


def held_out(seed: int, game_index: int) -> int:
    """The expert's held-out states of game ``game_index``."""
    return _per_game(1, seed, game_index)


def random_play(seed: int, game_index: int) -> int:
    """Random play of game ``game_index`` beside its expert's reference play."""
    return _per_game(2, seed, game_index)


def rank_states(seed: int, source_index: int) -> int:
    """rank_sources: the states of source ``source_index``."""
    return _per_game(3, seed, source_index)


def rank_zero_shot(seed: int, source_index: int) -> int:
    """rank_sources: source ``source_index``'s zero-shot play."""
    return _per_game(4, seed, source_index)


def actor(seed: int, k: int) -> int:
    """Seed of the AMN's actor ``k`` (from 0; a Ray actor, or the acting thread's worker, k = 0):
    its exploration generator, and its emulators
    (game i's at ``actor(seed, k) + 1000 i``, actors.py)."""
    return ACTORS_START + ACTOR_SPAN * ((seed % SEEDS) * ACTORS + k % ACTORS)


def replay(seed: int, game_index: int) -> int:
    """Numpy seed of game ``game_index``'s replay sampling (not an emulator seed)."""
    return seed + game_index


def stream(purpose: str, seed: int, game_index: int = 0, k: int = 0) -> int:
    """First emulator seed of ``purpose`` (one of ``PURPOSES``) for (seed, game, k): ``k`` is
    the test play number, the restart step, or the actor; ignored where the purpose has none."""
    if purpose == "eval":
        return eval_play(seed)
    if purpose == "test_play":
        return test_play(seed, k, game_index)
    if purpose == "emulators":
        return emulators(seed, game_index, k)
    if purpose == "actor":
        return actor(seed, k)
    functions = {"expert_play": expert_play, "held_out": held_out, "random_play": random_play,
                 "rank_states": rank_states, "rank_zero_shot": rank_zero_shot}
    if purpose not in functions:
        raise ValueError(f"unknown seed stream {purpose!r}: one of {PURPOSES}")
    return functions[purpose](seed, game_index)
