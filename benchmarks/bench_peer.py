"""Agent steps/s of this project's fast expert recipe beside a PyTorch single-file DQN with
CleanRL ``dqn_atari.py``'s published settings, measured on this machine in one sitting.

The peer side is written here from CleanRL's published hyperparameters (one emulator,
Nature CNN, Adam 1e-4, batch 32, one update per 4 agent steps, target copy every 1,000
steps, epsilon 1 -> 0.01, its replay storing each observation, a stack of 4 frames, once):
no CleanRL code is copied or imported. It runs in a separate Python that has PyTorch
(``--peer_python``); this project does not depend on PyTorch. Ours is the real
``--mode=dqn`` command on ``flags/expert_fast.flags`` with a small replay.

Prints, for each side: agent steps/s and frames/s after learning starts, updates/s,
replay bytes per transition, and the hours to a given number of agent steps.

Usage:
  python benchmarks/bench_peer.py --peer_python=/path/to/venv-with-torch/bin/python
         [--seconds=60] [--bench_game=Pong]
  (the peer alone: <peer python> benchmarks/bench_peer.py --side=peer --seconds=60)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("side", "both", ["both", "ours", "peer"], "Which loop to measure.")
flags.DEFINE_string("peer_python", None, "A Python with torch, gymnasium and ale-py installed.")
flags.DEFINE_string("bench_game", "Pong", "Game to benchmark.")
flags.DEFINE_float("seconds", 60.0, "Seconds of learning measured per side.")
flags.DEFINE_integer("peer_replay", 50_000, "Peer replay capacity (CleanRL's default is 1M).")
FLAGS = flags.FLAGS

FRAMES_PER_STEP = 4
PEER_LEARNING_STARTS = 2_000  # CleanRL waits 80,000 steps; only the learning phase is timed
HORIZONS = (1_000_000, 10_000_000)  # agent steps


# ------------------------------------------------------------------ the peer loop
def peer(game: str, seconds: float, capacity: int) -> dict:
    """A single-environment PyTorch DQN with CleanRL dqn_atari's settings; returns its rates."""
    import ale_py
    import gymnasium as gym
    import numpy as np
    import torch
    from torch import nn

    gym.register_envs(ale_py)
    env = gym.make(f"{game}NoFrameskip-v4")
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                          terminal_on_life_loss=False, grayscale_obs=True)
    env = gym.wrappers.FrameStackObservation(env, 4)
    n_actions = env.action_space.n

    def q_network():
        return nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, n_actions))

    torch.manual_seed(0)
    online, target = q_network(), q_network()
    target.load_state_dict(online.state_dict())
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-4)
    # One stacked observation per transition, the next one read from the slot after it.
    obs_buffer = np.zeros((capacity, 4, 84, 84), np.uint8)
    next_buffer = np.zeros((capacity, 4, 84, 84), np.uint8)  # written only at episode ends
    actions = np.zeros(capacity, np.int64)
    rewards = np.zeros(capacity, np.float32)
    dones = np.zeros(capacity, np.float32)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    size = position = 0

    def sample(batch):
        index = rng.integers(0, size - 1, batch)
        index = index[(index + 1) % capacity != position]  # skip the slot being overwritten
        nxt = np.where(dones[index, None, None, None] > 0, next_buffer[index],
                       obs_buffer[(index + 1) % capacity])
        return (torch.from_numpy(obs_buffer[index]).float() / 255.0, torch.from_numpy(actions[index]),
                torch.from_numpy(rewards[index]), torch.from_numpy(nxt).float() / 255.0,
                torch.from_numpy(dones[index]))

    step, updates, timed_start, timed_steps, timed_updates = 0, 0, None, 0, 0
    while True:
        epsilon = max(0.01, 1.0 - step / 1_000_000 * 0.99)  # 10% of 10M steps
        if rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            with torch.no_grad():
                q = online(torch.from_numpy(np.asarray(obs)[None]).float() / 255.0)
            action = int(q.argmax(dim=1).item())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        obs_buffer[position] = obs
        actions[position], rewards[position] = action, float(np.sign(reward))
        dones[position] = float(terminated)
        if terminated or truncated:
            next_buffer[position] = next_obs
            next_obs, _ = env.reset()
        position, size = (position + 1) % capacity, min(size + 1, capacity)
        obs = next_obs
        step += 1
        if step > PEER_LEARNING_STARTS and step % 4 == 0:
            s, a, r, s2, d = sample(32)
            with torch.no_grad():
                target_q = r + 0.99 * target(s2).max(dim=1).values * (1.0 - d)
            chosen = online(s).gather(1, a[:, None]).squeeze(1)
            loss = nn.functional.mse_loss(chosen, target_q)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
        if step % 1_000 == 0:
            target.load_state_dict(online.state_dict())
        if step == PEER_LEARNING_STARTS + 200:  # warmed up: start the clock
            timed_start, timed_steps, timed_updates = time.time(), step, updates
        if timed_start is not None and time.time() - timed_start >= seconds:
            break
    elapsed = time.time() - timed_start
    per_transition = (obs_buffer.nbytes + actions.nbytes + rewards.nbytes + dones.nbytes) / capacity
    return {"agent_steps_per_s": (step - timed_steps) / elapsed,
            "updates_per_s": (updates - timed_updates) / elapsed,
            "bytes_per_transition": per_transition, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ our loop
def ours(game: str, seconds: float) -> dict:
    """The real ``--mode=dqn`` command on the fast recipe; frames/s read from its progress lines."""
    from loop_fps import ROOT, command_fps

    steps = int(seconds * 110) + 6_000  # about `seconds` of learning at ~100 agent steps/s
    fps = command_fps([
        f"--flagfile={ROOT}/flags/expert_fast.flags", f"--game={game}",
        f"--training_steps={steps}", "--learning_starts=2000", "--replay_capacity=50000",
        f"--log_period={max(400, steps // 12)}", "--eval_period=100000000",
        "--checkpoint_period=100000000", "--eval_episodes=1", "--eval_max_steps=10",
        "--eval_envs=1",
    ], skip=3)  # fmt: skip
    return {"agent_steps_per_s": fps / FRAMES_PER_STEP, "updates_per_s": fps / FRAMES_PER_STEP / 4,
            "bytes_per_transition": None}


def _row(name: str, figures: dict) -> str:
    steps = figures["agent_steps_per_s"]
    hours = " | ".join(f"{h / steps / 3600:.1f} h" for h in HORIZONS)
    per = figures.get("bytes_per_transition")
    per = f"{per:,.0f} B" if per else "7,062 B (benchmarks/bench_dqn.py)"
    return (f"| {name} | {steps:,.1f} | {steps * FRAMES_PER_STEP:,.0f} | {figures['updates_per_s']:.1f} | "
            f"{per} | {hours} |")


def main(argv):
    del argv
    if FLAGS.side == "peer":
        print(json.dumps(peer(FLAGS.bench_game, FLAGS.seconds, FLAGS.peer_replay)))
        return 0
    results = {}
    if FLAGS.side in ("both", "ours"):
        results["amn_tf, flags/expert_fast.flags (4 envs, 1 update / 4 steps)"] = ours(
            FLAGS.bench_game, FLAGS.seconds)
    if FLAGS.side == "both":
        if not FLAGS.peer_python:
            sys.exit("bench_peer: give --peer_python=<a Python with torch, gymnasium and ale-py>")
        output = subprocess.run(
            [FLAGS.peer_python, os.path.abspath(__file__), "--side=peer", f"--seconds={FLAGS.seconds}",
             f"--bench_game={FLAGS.bench_game}", f"--peer_replay={FLAGS.peer_replay}"],
            capture_output=True, text=True, check=True).stdout
        figures = json.loads(output.strip().splitlines()[-1])
        results[f"PyTorch {figures['torch']}, CleanRL dqn_atari settings (1 env, 1 update / 4 steps)"] = figures
    print(f"# bench_peer: {FLAGS.bench_game}, {FLAGS.seconds:.0f} s of learning per side, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
    print("| loop | agent steps/s | frames/s | updates/s | replay bytes/transition | "
          + " | ".join(f"hours to {h / 1e6:g}M steps" for h in HORIZONS) + " |")
    print("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in HORIZONS) + " |")
    for name, figures in results.items():
        print(_row(name, figures))
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
