"""Every random stream a run derives from ``--seed``, named in one place so that no two
collide: game ``i``'s emulators, its replay sampling, its test plays, the experts' reference
plays and held-out states, the AMN's Ray actors."""

from __future__ import annotations

GAME_STRIDE = 1000  # game i's emulators: seed + 1000 i (+ the step, at each restart of episodes)
TEST_PLAY = 1  # the k-th test play of game i during training: seed + 1 + 31 k + i
TEST_PLAY_STRIDE = 31
EXPERT_PLAY = 101  # the expert of game i measured before distillation: seed + 101 + i
HELD_OUT = 202  # its held-out states: seed + 202 + i
RANDOM_PLAY = 303  # random play of game i beside it: seed + 303 + i
ACTOR_STRIDE = 7919  # the AMN's Ray actor k (from 0): seed + 7919 (k + 1)
TEST_PLAY_EXPLORATION = 7919  # a test play seeded s explores with seed s + 7919
RANK_STATES = 1  # rank_sources: states of source i, seed + 1 + i; its zero-shot play, seed + 100 + i
RANK_ZERO_SHOT = 100


def emulators(seed: int, game_index: int, step: int = 0) -> int:
    return seed + GAME_STRIDE * game_index + step


def replay(seed: int, game_index: int) -> int:
    return seed + game_index


def test_play(seed: int, plays_so_far: int, game_index: int = 0) -> int:
    return seed + TEST_PLAY + TEST_PLAY_STRIDE * plays_so_far + game_index


def actor(seed: int, k: int) -> int:
    return seed + ACTOR_STRIDE * (k + 1)
