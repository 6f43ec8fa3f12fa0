"""Many actors, one learner: an actor's chunks recorded into the learner's memory equal what
in-process play records, bad actor flags (main in-process), and two real Ray actors feed one AMN
learner through main (slow: a subprocess)."""

import dataclasses
import json
import os

import numpy as np
import pytest
from conftest import REPO_ROOT, main_command, main_in_process, subprocess_env

from amn_tf import actors, envs, replay

GAMES = ["Pong", "Breakout"]
OUTPUTS = {"q_values": ((4,), np.float32), "features": ((6,), np.float16)}


def fake_outputs(states):
    """Stands in for an expert: outputs that depend on every frame of each state."""
    return {"q_values": states.mean(axis=(1, 2), dtype=np.float64).astype(np.float32),
            "features": states[:, 30:33, 40, 1:3].reshape(len(states), 6).astype(np.float16)}


def test_actor_chunks_record_what_in_process_play_records(float32_policy):
    # Episodes cut at 40 agent steps, so new episodes start inside the chunks.
    protocol = dataclasses.replace(envs.PROTOCOLS["paper"], max_episode_frames=160)
    worker = actors.ActorWorker(GAMES, 2, protocol, "vector", "small", epsilon=0.5, seed=3)
    assert worker.ready() == 2 * len(GAMES)  # warming up touches neither envs nor random stream
    weights = [w + 0.01 for w in worker.amn.get_weights()]
    memories = [replay.ReplayMemory(400, 4) for _ in GAMES]  # actor 1 of 2: streams 2 and 3
    # AMN memories: each new state's outputs computed by the learner, one call per chunk.
    annotated = [replay.ReplayMemory(400, 4, outputs=OUTPUTS) for _ in GAMES]
    calls = []

    def annotate(states_per_game):
        calls.append([len(s) for s in states_per_game])
        return [fake_outputs(s) for s in states_per_game]

    chunks = [worker.play(weights, 1, 30), worker.play(weights, 1, 30)]
    for got, want in zip(worker.amn.get_weights(), weights):
        np.testing.assert_array_equal(got, want)  # the actor plays with the weights it was sent
    for chunk in chunks:
        actors.ingest(chunk, memories, [2, 3])
        actors.ingest(chunk, annotated, [2, 3], annotate)
    assert len(calls) == 2  # one call per chunk for both games
    worker.close()
    assert sum(len(c["games"][0]["starts"]) for c in chunks) >= 1  # episodes did end in there

    for index, game in enumerate(GAMES):  # replay the actor's actions in-process
        env = envs.make_env(game, 2, protocol, 3 + 1000 * index, "vector")
        reference = replay.ReplayMemory(400, 4)
        reference_annotated = replay.ReplayMemory(400, 4, outputs=OUTPUTS)
        streams = np.array([2, 3])
        first = env.reset()
        reference.start_episodes(streams, first)
        reference_annotated.start_episodes(streams, first, fake_outputs(first))
        returns = []
        for chunk in chunks:
            actions = chunk["games"][index]["actions"]
            for t in range(chunk["steps"]):
                result = env.step(actions[t])
                reference.append(streams, actions[t], result.reward, result.terminated,
                                 result.truncated, result.life_lost, result.final_obs)
                reference_annotated.append(streams, actions[t], result.reward, result.terminated,
                                           result.truncated, result.life_lost, result.final_obs,
                                           fake_outputs(result.final_obs))
                ended = result.terminated | result.truncated
                if ended.any():
                    reference.start_episodes(streams[ended], result.obs[ended])
                    reference_annotated.start_episodes(streams[ended], result.obs[ended],
                                                       fake_outputs(result.obs[ended]))
                returns += [r for _, r, _ in result.episode_returns]
        env.close()
        memory = memories[index]
        np.testing.assert_array_equal(memory.cursor, reference.cursor)
        for name in ("frames", "actions", "rewards", "flags"):
            np.testing.assert_array_equal(getattr(memory, name), getattr(reference, name), err_msg=name)
        # With outputs: the same entries, and each state's outputs as in-process play stores them.
        np.testing.assert_array_equal(annotated[index].frames, reference.frames)
        np.testing.assert_array_equal(annotated[index].flags, reference.flags)
        for name in OUTPUTS:
            np.testing.assert_array_equal(annotated[index].outputs[name],
                                          reference_annotated.outputs[name], err_msg=name)
        states, stored = annotated[index].sample_states(64, outputs=True)
        for name, value in fake_outputs(states).items():
            np.testing.assert_array_equal(stored[name], value, err_msg=name)
        assert [r for c in chunks for r in c["games"][index]["returns"]] == returns
        assert len(memory) > 0 and np.all(memory.cursor[:2] == 0)  # actor 0's streams untouched


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_actors=2"], "--num_actors=2 needs --ray_address"),
        (["--ray_address=local"], "add --num_actors=N or drop --ray_address"),
        (["--num_actors=2", "--ray_address=local", "--deterministic"], "--deterministic needs --num_actors=0"),
        (["--num_actors=2", "--ray_address=local", "--amn_actor=expert"], "drop --amn_actor=expert"),
        (["--num_actors=2", "--ray_address=local", "--amn_expert_steps=100"], "--amn_expert_steps needs --num_actors=0"),
        (["--amn_actor=expert", "--amn_expert_steps=100"], "--amn_actor=expert has the expert play throughout"),
        (["--amn_acting=thread", "--deterministic"], "--amn_acting=thread cannot serve --deterministic"),
        (["--amn_acting=thread", "--amn_actor=expert"], "--amn_acting=thread cannot serve --amn_actor=expert"),
        (["--amn_acting=thread", "--num_actors=2", "--ray_address=local"], "--amn_acting=thread plays in this process"),
    ],
)
def test_actor_flags_bad_combinations_one_line(pong_expert, tmp_path, flags, message):
    experts = os.path.dirname(os.path.dirname(pong_expert.path))
    result = main_in_process("--mode=amn", f"--experts={experts}", f"--run_dir={tmp_path / 'r'}", *flags)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.parametrize(
    "flags, acting",
    [
        ([], "thread"),  # the default: acting overlaps the learner
        (["--amn_acting=inline"], "inline"),
        (["--deterministic"], "inline"),  # auto: the flags that need the learner's thread to play
        (["--amn_actor=expert"], "inline"),
        (["--amn_expert_steps=100"], "thread"),  # the experts play their steps inline, then the thread
        (["--num_actors=2", "--ray_address=local"], "ray"),
    ],
)
def test_amn_acting_auto_plays_in_a_thread_unless_a_flag_needs_the_learners_thread(flags, acting):
    from conftest import parsed_flags

    from amn_tf import cli

    with parsed_flags("--mode=amn", *flags) as values:
        assert cli.build(values).acting == acting


def test_thread_actor_feeds_the_memories_beside_the_learners_thread(float32_policy):
    """``ThreadActors``: each ``collect`` records the chunk its thread played (every state with
    its outputs, computed in the caller's thread), relaunches it with the newest weights, and
    hands over the episodes that ended; a worker's error reaches the caller."""
    import threading

    protocol = dataclasses.replace(envs.PROTOCOLS["paper"], max_episode_frames=160)
    memories = [replay.ReplayMemory(400, 2, outputs=OUTPUTS) for _ in GAMES]
    callers = []

    def annotate(states_per_game):
        callers.append(threading.current_thread().name)
        return [fake_outputs(s) for s in states_per_game]

    play = actors.ThreadActors(GAMES, memories, 2, protocol, "vector", "small", 0.5, seed=3,
                               num_actors=1, chunk_steps=30, annotate=annotate)
    worker = play.workers[0]
    weights = [w + 0.01 for w in worker.amn.get_weights()]
    play.start(weights)
    assert play.collect() == 60  # 30 vector steps x 2 envs per game
    newer = [w + 0.02 for w in weights]
    play.set_weights(newer)  # the chunk in flight keeps the weights it was launched with...
    assert play.collect() == 60
    assert play.collect() == 60  # ...the one launched after set_weights plays with the new ones
    for got, want in zip(worker.amn.get_weights(), newer):
        np.testing.assert_array_equal(got, want)
    assert callers == ["MainThread"] * 3  # outputs computed where the learner runs
    finished = play.take_finished()
    assert finished and {game for game, _ in finished} <= set(GAMES)  # 160-frame episodes ended
    assert play.take_finished() == []
    for memory in memories:
        # each stream: its first observation's 4 frames, 90 steps, 4 more per episode started
        assert int(memory.cursor.sum()) >= 2 * 4 + 180
        states, stored = memory.sample_states(64, outputs=True)
        for name, value in fake_outputs(states).items():
            np.testing.assert_array_equal(stored[name], value, err_msg=name)
    play.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("amn-actor")]

    broken = actors.ThreadActors(GAMES[:1], memories[:1], 2, protocol, "vector", "small", 0.5, seed=4,
                                 num_actors=1, chunk_steps=5)

    def fail(*args):
        raise RuntimeError("emulator lost")

    broken.workers[0].play = fail
    broken.start(weights)
    with pytest.raises(RuntimeError, match="emulator lost"):
        broken.collect()
    broken.close()


@pytest.mark.slow
def test_two_ray_actors_feed_one_learner_and_resume_after_a_crash(pong_expert, tmp_path):
    import subprocess

    experts = os.path.dirname(os.path.dirname(pong_expert.path))
    run_dir = tmp_path / "run"
    marker = tmp_path / "crashed-once"
    command = main_command(
        "--flagfile=flags/amn_smoke.flags", f"--experts={experts}", f"--run_dir={run_dir}",
        f"--export_dir={tmp_path / 'export'}", "--num_actors=2", "--ray_address=local",
        "--actor_chunk_steps=25", "--actor_sync_period=10", "--save_replay", "--checkpoint_period=100")
    env = dict(subprocess_env(), AMN_TF_CRASH_AT=f"evaluation:3:{marker}")
    # The learner dies (as by SIGKILL) in its first AMN evaluation, at step 200 per game
    # (evaluation 3 of the process: 1 measures the expert, 2 random play)...
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 137 and marker.exists(), first.stderr[-3000:]
    assert "(2 actors)" in first.stdout
    checkpoint = sorted(p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("ckpt"))[-1]
    assert checkpoint.name.endswith("100")
    with np.load(checkpoint / "replay-0.npz") as saved:
        cursor = saved["cursor"]
    # 2 actors x 2 envs = 4 streams; a stream holds its episode's 4 first frames and one frame
    # per step: 100 agent steps per game in chunks of 25 vector steps x 2 envs.
    started = int(np.count_nonzero(cursor))
    assert cursor.shape == (4,) and started in (2, 4)
    assert int(cursor.sum()) == 4 * started + 100
    # ...and the same command resumes from the step-100 checkpoint and finishes.
    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "at frame 400 per game" in second.stdout
    history = [json.loads(line) for line in open(run_dir / "eval.jsonl")]
    assert [r["step"] for r in history] == [200, 400]
    assert (tmp_path / "export" / "amn" / "run" / "1" / "saved_model.pb").exists()
    final = sorted(p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("ckpt"))[-1]
    with np.load(final / "replay-0.npz") as saved:
        assert np.all(saved["cursor"] > 4)  # both actors played into their own streams
