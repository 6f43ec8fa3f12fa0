"""Fan-out of independent runs (one expert DQN per game; evaluations of many SavedModels)
over Ray tasks, or one after another in this process without Ray.

Ray is imported only when ``--ray_address`` is given. Each expert trains in its own run
directory, so a task whose worker dies is retried by Ray (``max_retries``) and resumes from
that run's last checkpoint, as a rerun of the command would.
"""

from __future__ import annotations

import socket

from amn_tf import runtime


class RayError(runtime.RunError):
    """Ray is missing or the cluster cannot be reached."""


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"--ray_address={address!r}: use 'local', 'auto' or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise RayError(f"cannot reach a Ray cluster at {address} ({error.strerror or error}); "
                       "start one with `ray start --head` or use --ray_address=local") from None


def init_ray(address: str):
    try:
        import ray
    except ImportError:
        raise RayError("--ray_address needs Ray: pip install -e '.[distributed]'") from None
    if address not in ("local", "auto"):
        _check_reachable(address)
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RayError(f"cannot connect to Ray at {address!r}: {str(error).splitlines()[0]}") from None
    return ray


@runtime.releases_run_dirs  # free again when the task ends, even in a reused Ray worker
def _train_one(job):
    from amn_tf import dqn

    runtime.prepare_run_dir(job.dqn.run_dir, {"mode": "dqn", "game": job.dqn.game}, job.flags)
    return dqn.train(job.dqn)


def _evaluate_one(config):
    from amn_tf import evaluation

    return evaluation.evaluate(config)


def run(fanout) -> list:
    """Runs ``fanout.jobs`` (each a ``config_lib.FanOutJob``) and prints a summary."""
    work = _train_one if fanout.kind == "dqn" else _evaluate_one
    if fanout.kind == "dqn":  # a run directory in use refuses the whole command at once
        for job in fanout.jobs:
            runtime.check_run_dir_free(job.dqn.run_dir)
    if fanout.ray_address is None:
        results = [work(job) for job in fanout.jobs]
    else:
        ray = init_ray(fanout.ray_address)
        try:
            task = ray.remote(num_cpus=fanout.cpus_per_task, num_gpus=fanout.gpus_per_task,
                              max_retries=fanout.max_retries)(work)
            results = ray.get([task.remote(job) for job in fanout.jobs])
        except ray.exceptions.RayError as error:
            if isinstance(getattr(error, "cause", None), runtime.RunError):
                raise error.cause from None  # e.g. a run directory taken since the check
            raise RayError(f"a Ray task failed for good: {str(error).splitlines()[0]}") from None
        finally:
            ray.shutdown()
    print(f"[fanout] {len(results)} {fanout.kind} job(s) done"
          + (f" on Ray ({fanout.ray_address})" if fanout.ray_address else ""))
    if fanout.kind == "eval" and fanout.output_json:
        from amn_tf import checkpoints

        checkpoints.write_json_atomically(fanout.output_json, results)
        print(f"[fanout] results written to {fanout.output_json}")
    for job, result in zip(fanout.jobs, results):
        if fanout.kind == "dqn":
            final = result.get("final_eval", {})
            print(f"[fanout] {job.dqn.game}: {result.get('export')} "
                  f"(final eval mean {final.get('mean', float('nan')):.1f})")
        else:
            for row in result["results"]:
                print(f"[fanout] {job.saved_model or 'random'} {row['game']}: mean {row['mean']:.1f} "
                      f"over {row['episodes']} episodes")
    return results
