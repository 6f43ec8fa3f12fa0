"""The seed streams of ``amn_tf.seeds``: over a realistic grid (seeds 0..99, games 0..17, test
plays 0..999, emulator restarts, Ray actors) no two (purpose, seed, game, k) share an emulator
seed, ``--mode=eval``'s stream is apart from every training test play, every emulator a stream
seeds is one ALE's vector env accepts, and the same inputs give the same seeds. No TensorFlow,
no subprocess: numpy evaluates the functions over the whole grid at once."""

from __future__ import annotations

import numpy as np
import pytest

from amn_tf import seeds

SEEDS = np.arange(100).reshape(-1, 1, 1)
GAMES = np.arange(18).reshape(1, -1, 1)
PLAYS = np.arange(1000).reshape(1, 1, -1)  # test plays, or restarts, per (seed, game)
CHECKPOINT_PERIODS = (50_000, 10_000, 1_000, 100)  # the default, and smaller ones tests use
ACTORS = np.arange(64).reshape(1, -1, 1)
PER_GAME = ("expert_play", "held_out", "random_play", "rank_states", "rank_zero_shot")


def blocks(starts) -> np.ndarray:
    """The blocks of ``BLOCK`` emulator seeds that streams starting at ``starts`` reach; a
    stream that starts mid-block (--seed used as is) reaches into the next too."""
    starts = np.asarray(starts).ravel()
    return np.concatenate([starts // seeds.BLOCK, (starts + seeds.BLOCK - 1) // seeds.BLOCK])


def aligned_blocks(starts) -> np.ndarray:
    """Block indices of streams that each start a block of their own (asserted)."""
    starts = np.asarray(starts).ravel()
    assert np.all(starts % seeds.BLOCK == 0)
    return starts // seeds.BLOCK


def unique(values) -> np.ndarray:
    """Sorted distinct values (by a sort: this numpy's ``np.unique`` is 100x slower here)."""
    values = np.sort(np.asarray(values).ravel())
    return values[np.concatenate([[True], values[1:] != values[:-1]])]


def distinct(values) -> bool:
    values = np.asarray(values).ravel()
    return unique(values).size == values.size


@pytest.fixture(scope="module")
def grid_blocks():
    """Per purpose: (streams over the grid, the sorted distinct blocks of ``BLOCK`` emulator
    seeds they own), the functions evaluated elementwise on the whole grid at once."""
    owned = {"test_play": aligned_blocks(seeds.test_play(SEEDS, PLAYS, GAMES)),
             # every restart of a 50M-step run checkpointed each 50k steps
             "emulators": aligned_blocks(seeds.emulators(SEEDS, GAMES, PLAYS * 50_000)),
             "eval": aligned_blocks(seeds.eval_play(np.arange(10_000)))}
    for purpose in PER_GAME:
        owned[purpose] = aligned_blocks(getattr(seeds, purpose)(SEEDS[..., 0], GAMES[..., 0]))
    # A Ray actor seeds game i's emulators at actor + 1000 i (actors.py): every block they reach.
    owned["actor"] = blocks(seeds.actor(SEEDS, ACTORS) + 1000 * GAMES.reshape(1, 1, -1))
    # --seed used as is (transfer.py's target states and rank_sources' random play).
    owned["--seed"] = blocks(SEEDS)
    return {purpose: (found.size, unique(found)) for purpose, found in owned.items()}


def test_test_plays_never_collide_over_seeds_games_and_plays(grid_blocks):
    # 100 seeds x 18 games x 1000 test plays: 1.8M streams, each its own block of 64 emulators.
    streams, owned = grid_blocks["test_play"]
    assert streams == owned.size == 100 * 18 * 1000
    # The old derivation's collision: seed 1 / game 0 played seed 0 / game 1's episodes.
    assert seeds.test_play(1, 5, 0) != seeds.test_play(0, 5, 1)
    assert seeds.test_play(0, 1, 0) != seeds.test_play(0, 0, 31)


def test_emulator_restarts_never_collide(grid_blocks):
    streams, owned = grid_blocks["emulators"]  # every checkpoint of a 50M-step run, 100 seeds, 18 games
    assert streams == owned.size == 100 * 18 * 1000
    for period in CHECKPOINT_PERIODS:  # restarts at multiples of the checkpoint period stay apart
        assert distinct(seeds.emulators(3, 2, PLAYS * period)), period
    assert seeds.emulators(5, 1) == seeds.emulators(5, 1, 0)  # the constructor's seed is step 0's


def test_every_other_purpose_is_apart_within_itself(grid_blocks):
    for purpose in ("eval", *PER_GAME):
        streams, owned = grid_blocks[purpose]
        assert streams == owned.size, purpose
    spans = np.sort(seeds.actor(SEEDS, ACTORS).ravel())
    # Each actor's emulators (up to 32 games of up to 64 envs, 1000 apart) stay inside its own span.
    assert np.all(np.diff(spans) >= seeds.ACTOR_SPAN)
    assert 1000 * (seeds.GAMES - 1) + seeds.BLOCK <= seeds.ACTOR_SPAN


def test_purposes_never_share_an_emulator_seed(grid_blocks):
    """Each purpose's blocks over the grid lie in an interval no other purpose's reach."""
    spans = sorted((owned[0], owned[-1], purpose) for purpose, (_, owned) in grid_blocks.items())
    for (_, last, first_purpose), (first, _, next_purpose) in zip(spans, spans[1:]):
        assert last < first, (first_purpose, next_purpose)


def test_mode_eval_never_replays_a_training_test_play(grid_blocks):
    """The fresh-episode rule: --mode=eval --seed=N plays none of the episodes any training
    test play of any seed played (so none that chose a --keep_best snapshot)."""
    _, training = grid_blocks["test_play"]
    evaluated = seeds.eval_play(np.arange(100)) // seeds.BLOCK
    assert not np.isin(evaluated, training).any()
    assert all(seeds.eval_play(seed) != seeds.test_play(seed, k, 0) for seed in range(100) for k in range(10))
    # Stronger: the whole eval range lies below every test play there can be.
    top_eval = seeds.eval_play(seeds.EVAL_SEEDS - 1) + seeds.BLOCK
    assert top_eval <= seeds.PER_GAME_START <= seeds.TEST_PLAY_START == seeds.test_play(0, 0, 0)
    assert seeds.stream("eval", 7) == seeds.eval_play(7)


@pytest.mark.parametrize("purpose", seeds.PURPOSES)
def test_every_stream_stays_in_the_emulators_range(purpose):
    """0 <= s and s + BLOCK - 1 < 2**31 (ALE's vector env refuses a batch whose last seed
    passes 2**31 - 1), plain ints, for seeds, games, plays and steps far past the grid."""
    extremes = (0, 1, 17, 99, 255, 256, 10**6, 2**31, 10**12)
    for seed in extremes:
        for game in (0, 17, 31, 32, 1000):
            for k in (0, 63, 999, 1023, 1024, 50_000_000, 10**12):
                value = seeds.stream(purpose, seed, game, k)
                assert type(value) is int
                assert 0 <= value and value + seeds.BLOCK - 1 < seeds.MAX_SEED, (purpose, seed, game, k)
                if purpose == "actor":  # its last game's emulators too
                    assert value + 1000 * (seeds.GAMES - 1) + seeds.BLOCK - 1 < seeds.MAX_SEED
    assert 2**31 - 1 == seeds.MAX_SEED - 1


def test_same_inputs_give_the_same_seeds():
    for purpose in seeds.PURPOSES:
        assert seeds.stream(purpose, 3, 2, 5) == seeds.stream(purpose, 3, 2, 5)
    # The layout itself, pinned: a change here changes every future run's episodes.
    assert seeds.test_play(0, 0, 0) == 2**29
    assert seeds.test_play(1, 2, 3) == 2**29 + 64 * ((1 * 32 + 3) * 1024 + 2)
    assert seeds.emulators(1, 3, 100_000) == 2**30 + 64 * ((1 * 32 + 3) * 1021 + 100_000 % 1021)
    assert seeds.eval_play(0) == 2**22 and seeds.eval_play(2) == 2**22 + 128
    assert seeds.expert_play(0, 1) == 2**23 + 64 and seeds.held_out(0, 0) == 2**23 + 2**19
    assert seeds.actor(1, 2) == 2**30 + 2**29 + 32768 * (64 + 2)
    assert seeds.replay(4, 2) == 6  # a numpy sampler's seed, unchanged
    # Wrapping past the grid is deterministic too (and documented): seed 256 is seed 0.
    assert seeds.test_play(256, 0, 0) == seeds.test_play(0, 0, 0)
    with pytest.raises(ValueError, match="unknown seed stream"):
        seeds.stream("training", 0)
