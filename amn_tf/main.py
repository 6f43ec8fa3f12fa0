"""Entry point: ``python -m amn_tf.main --mode=dqn|amn|eval|report [flags]``.

Parses flags into a frozen config, dispatches on ``--mode``, and turns user mistakes into
one clear line and a non-zero exit (no traceback).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from amn_tf import cli, envs  # noqa: E402
from amn_tf import config as config_lib  # noqa: E402

# config class -> (module, function) of the mode that runs it; modes are siblings, imported
# only when chosen (report and a bad flag never import TensorFlow).
MODES = {
    config_lib.DqnConfig: ("amn_tf.dqn", "train"),
    config_lib.TransferConfig: ("amn_tf.transfer", "train"),
    config_lib.MultitaskDqnConfig: ("amn_tf.multitask_dqn", "train"),
    config_lib.RankConfig: ("amn_tf.transfer", "rank_sources"),
    config_lib.AmnConfig: ("amn_tf.actor_mimic", "train"),
    config_lib.EvalRunConfig: ("amn_tf.evaluate", "run"),
    config_lib.ReportConfig: ("amn_tf.report", "run"),
}


def _user_errors():
    """The exception classes of user mistakes. Those of a module never imported cannot have
    been raised: leaving it unimported (TensorFlow) reports an early mistake at once."""
    from amn_tf import checkpoints, rundirs, runtime

    errors = [config_lib.ConfigError, envs.UnknownGameError, rundirs.RunError,
              runtime.NonFiniteError, checkpoints.CheckpointError]
    if "amn_tf.export" in sys.modules:
        errors += [sys.modules["amn_tf.export"].SavedModelError, sys.modules["amn_tf.export"].ExportError]
    return tuple(errors)


def _mode(config_class):
    import importlib

    module, function = MODES[config_class]
    return getattr(importlib.import_module(module), function)


def dispatch(config):
    if isinstance(config, config_lib.FanOutConfig):
        from amn_tf import fanout

        if config.kind == "dqn":
            return fanout.run(config, _mode(config_lib.DqnConfig))
        from amn_tf import evaluate

        return fanout.run(config, evaluate.evaluate)
    if type(config) not in MODES:
        raise config_lib.ConfigError(f"no handler for {type(config).__name__}")
    if getattr(config, "run_dir", None):  # another process's run is refused before TensorFlow loads
        from amn_tf import rundirs

        rundirs.check_run_dir_free(config.run_dir)
    return _mode(type(config))(config)


def _split_cpu(devices: int) -> None:
    """Splits the CPU into ``devices`` logical devices, before TensorFlow touches one."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)


def main(argv):
    """Reads the flags (here, once), builds the mode's config and runs it."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise config_lib.ConfigError(f"unexpected arguments {argv[1:]}: flags look like --name=value")
    config = cli.build()
    if cli.FLAGS.cpu_devices > 1:
        _split_cpu(cli.FLAGS.cpu_devices)
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
