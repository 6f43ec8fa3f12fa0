"""Fan-out of independent runs (one expert DQN per game; evaluations of many SavedModels)
over Ray tasks, or one after another in this process without Ray.

Ray is imported only when ``--ray_address`` is given. Each expert trains in its own run
directory, so a task whose worker dies is retried by Ray (``max_retries``) and resumes from
that run's last checkpoint, as a rerun of the command would.
"""

from __future__ import annotations

from amn_tf import cluster, rundirs


def run(fanout, work) -> list:
    """Runs ``work(job)`` for each of ``fanout.jobs`` (``DqnConfig``s with ``work`` the DQN
    mode's ``train``, which frees its run directory when it returns, even in a reused Ray
    worker; or ``EvalRunConfig``s with ``work`` the evaluation) and prints a summary."""
    if fanout.kind == "dqn":  # a run directory in use refuses the whole command at once
        for job in fanout.jobs:
            rundirs.check_run_dir_free(job.run_dir)
    if fanout.ray_address is None:
        results = [work(job) for job in fanout.jobs]
    else:
        ray = cluster.init_ray(fanout.ray_address)
        try:
            task = ray.remote(num_cpus=fanout.cpus_per_task, num_gpus=fanout.gpus_per_task,
                              max_retries=fanout.max_retries)(work)
            results = ray.get([task.remote(job) for job in fanout.jobs])
        except ray.exceptions.RayError as error:
            if isinstance(getattr(error, "cause", None), rundirs.RunError):
                raise error.cause from None  # e.g. a run directory taken since the check
            raise cluster.RayError(f"a Ray task failed for good: {str(error).splitlines()[0]}") from None
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
            print(f"[fanout] {job.game}: {result.get('export')} "
                  f"(final eval mean {final.get('mean', float('nan')):.1f})")
        else:
            for row in result["results"]:
                print(f"[fanout] {job.saved_model or 'random'} {row['game']}: mean {row['mean']:.1f} "
                      f"over {row['episodes']} episodes")
    return results
