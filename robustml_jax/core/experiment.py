"""What every experiment main does around its ``train_and_evaluate``.

``main.py`` files stay a few lines::

    main = experiment.define_main(train.train_and_evaluate, validate=default.validate)
    if __name__ == "__main__":
        experiment.app_run(main)

:func:`define_main` defines ``--config`` / ``--workdir``; :func:`run` sets up (multi-host)
devices, records the config, runs the experiment and writes its named metrics atomically to
``<workdir>/results.json``. :func:`app_run` is ``absl.app.run`` plus the suite's error policy:
a user's mistake (a :class:`~robustml_jax.core.errors.UserError`: unknown config name, invalid
config value, missing dataset, a checkpoint written by another config; or a missing file)
prints one line ``error: ...`` and exits with status 2; a bug keeps its traceback.
"""

from __future__ import annotations

import importlib
import json
import logging as pylogging
import pathlib
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
from absl import logging

from robustml_jax.core import distributed
from robustml_jax.core.configs import unknown_config as _unknown_config
from robustml_jax.core.errors import ConfigError, UserError
from robustml_jax.core.results import atomic_write_text, write_results

__all__ = [
    "CONFIG_NAMES",
    "app_run",
    "define_main",
    "get_config",
    "run",
    "unknown_config",
    "user_error_message",
]

CONFIG_NAMES = ("smoke", "small", "full")


def unknown_config(arg: str, names=CONFIG_NAMES) -> ConfigError:
    return _unknown_config(arg, names)


def get_config(module: str, arg: str) -> ml_collections.ConfigDict:
    """Loads ``get_config(arg)`` from a config module (``experiments.<paper>.configs.default``)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ConfigError(f"no config module '{module}' ({e})") from None
    return mod.get_config(arg)


class _QuietOrbax(pylogging.Filter):
    """Drops orbax's per-save INFO lines and jax's probing of absent TPUs, which would bury the
    progress output."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        if record.levelno >= pylogging.WARNING:
            return True
        if "orbax" in record.pathname:
            return False
        return "Unable to initialize backend" not in str(record.msg)


def define_main(
    train_and_evaluate: Callable[..., Mapping[str, Any]],
    *,
    validate: Callable[[ml_collections.ConfigDict], None] | None = None,
) -> Callable[[list[str]], None]:
    """Defines ``--config`` / ``--workdir`` and returns the ``main(argv)`` to give :func:`app_run`.

    Call it once, at the top level of an experiment's ``main.py``::

        main = experiment.define_main(train.train_and_evaluate, validate=default.validate)
        if __name__ == "__main__":
            experiment.app_run(main)

    Args:
      train_and_evaluate: ``train_and_evaluate(config, workdir, runtime) -> metrics``.
      validate: ``validate(config)`` raising :class:`ConfigError` for invalid values; it runs
        after ``--config.x=...`` overrides are applied and before anything is computed.
    """
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, "Experiment config file (path:arg).")
    workdir = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and results.")
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        if validate is not None and config.value is not None:
            validate(config.value)
        run(train_and_evaluate, config.value, workdir.value)

    return main


def user_error_message(e: BaseException) -> str | None:
    """The one-line message for a user's mistake, or None for a bug (keep its traceback)."""
    cause = e
    # absl wraps an exception raised while parsing --config (e.g. an unknown config name).
    while cause is not None and not isinstance(cause, UserError | FileNotFoundError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    return f"error: {_one_line(str(cause))}"


def _one_line(text: str) -> str:
    """The message itself: config_flags formats a traceback into its errors' text, whose last
    line is ``module.ExceptionClass: message``."""
    text = text.strip()
    if "Traceback (most recent call last)" in text:
        text = text.splitlines()[-1].strip()
        text = re.sub(r"^[\w.]+(Error|Exception): ", "", text)
    return " ".join(text.split())


def _parse_flags(argv: list[str]) -> list[str]:
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
        # Everything raised while parsing the command line is the user's: an unknown config
        # name, an override of a field the config lacks (KeyError / AttributeError from
        # ml_collections), a value of the wrong type.
        msg = user_error_message(e)
        if msg is None and isinstance(e, KeyError | AttributeError):
            field = _one_line(str(e)).strip("\"'")
            msg = f"error: the config has no field {field!r} (check the --config.<field> flags)"
        msg = msg or f"error: bad command line: {_one_line(str(e))}"
        sys.stderr.write(msg + "\n")
        sys.exit(2)


def app_run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)`` with the suite's error policy (see the module docstring)."""
    from absl import app

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except Exception as e:
            msg = user_error_message(e)
            if msg is None:
                raise
            sys.stderr.write(msg + "\n")
            sys.exit(2)

    app.run(guarded, flags_parser=_parse_flags)


def run(
    train_and_evaluate: Callable[..., Mapping[str, Any]],
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
) -> dict[str, Any]:
    """Runs one experiment in ``workdir`` and writes ``results.json``.

    ``train_and_evaluate(config, workdir, runtime)`` returns the named metrics; it writes its own
    plots and checkpoints into ``workdir`` and must resume from them when re-run.
    """
    if config is None:
        raise ConfigError(
            "--config is required (e.g. --config=experiments/<paper>/configs/default.py:small)"
        )
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietOrbax) for f in handler.filters):
        handler.addFilter(_QuietOrbax())
    runtime = distributed.setup(config)
    logging.info(
        "process %d/%d, devices: %s", runtime.process_index, runtime.process_count, jax.devices()
    )
    if runtime.is_main_process:
        atomic_write_text(
            workdir / "config.json", json.dumps(config.to_dict(), indent=2, default=str)
        )
    t0 = time.perf_counter()
    results = dict(train_and_evaluate(config, workdir, runtime))
    results.setdefault("wall_time_s", time.perf_counter() - t0)
    results.setdefault("devices", f"{jax.device_count()}x {jax.devices()[0].platform}")
    if runtime.is_main_process:
        write_results(workdir, results)
    return results
