"""Entry point: ``python -m amn_tf.main --mode=dqn|amn|eval|report [flags]``.

Parses flags into a frozen config, dispatches on ``--mode``, and turns user mistakes into
one clear line and a non-zero exit (no traceback).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from amn_tf import config as config_lib  # noqa: E402
from amn_tf import envs  # noqa: E402


def _user_errors():
    """The exception classes of user mistakes. Those of a module never imported cannot have
    been raised: leaving it unimported (TensorFlow) reports an early mistake at once."""
    from amn_tf import checkpoints, runtime

    errors = [config_lib.ConfigError, envs.UnknownGameError, runtime.RunError,
              runtime.NonFiniteError, checkpoints.CheckpointError]
    for module, names in (("amn_tf.transfer", ("InitError",)),
                          ("amn_tf.export", ("SavedModelError", "ExportError"))):
        if module in sys.modules:
            errors += [getattr(sys.modules[module], name) for name in names]
    return tuple(errors)


def dispatch(config):
    if isinstance(config, config_lib.FanOutConfig):
        from amn_tf import fanout

        return fanout.run(config)
    if isinstance(config, config_lib.DqnConfig):
        from amn_tf import dqn

        return dqn.train(config)
    if isinstance(config, config_lib.TransferConfig):
        from amn_tf import transfer

        return transfer.train(config)
    if isinstance(config, config_lib.MultitaskDqnConfig):
        from amn_tf import multitask_dqn

        return multitask_dqn.train(config)
    if isinstance(config, config_lib.RankConfig):
        from amn_tf import transfer

        return transfer.rank_sources(config)
    if isinstance(config, config_lib.AmnConfig):
        from amn_tf import actor_mimic

        return actor_mimic.train(config)
    if isinstance(config, config_lib.EvalRunConfig):
        from amn_tf import evaluation

        return evaluation.run(config)
    if isinstance(config, config_lib.ReportConfig):
        from amn_tf import report

        return report.run(config)
    raise config_lib.ConfigError(f"no handler for {type(config).__name__}")


def main(argv):
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise config_lib.ConfigError(f"unexpected arguments {argv[1:]}: flags look like --name=value")
    config = config_lib.build()
    if config_lib.FLAGS.cpu_devices > 1:  # before TensorFlow touches a device
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * config_lib.FLAGS.cpu_devices)
    if isinstance(config, config_lib.DqnConfig):
        from amn_tf import runtime

        runtime.prepare_run_dir(config.run_dir, {"mode": "dqn", "game": config.game},
                                config_lib.resolved_flags())

    dispatch(config)


def _main_with_clean_errors(argv):
    try:
        main(argv)
    except _user_errors() as error:
        print(f"amn_tf: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        import errno

        where = f" ({error.filename})" if error.filename else ""
        if error.errno == errno.ENOSPC:
            print(f"amn_tf: error: disk full while writing{where}: nothing partial was kept; free "
                  "space and rerun the same command to resume from the last checkpoint",
                  file=sys.stderr)
            sys.exit(3)
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            print(f"amn_tf: error: cannot write{where}: {error.strerror}; nothing partial was "
                  "kept; point --run_dir/--export_dir at a writable place and rerun",
                  file=sys.stderr)
            sys.exit(3)
        raise


def run():
    try:
        app.run(_main_with_clean_errors)
    except flags.Error as error:  # pragma: no cover - absl handles most parse errors itself
        print(f"amn_tf: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
