"""What every experiment main does around its ``train_and_evaluate``.

``main.py`` files stay about 40 lines: they define ``--config`` / ``--workdir`` and call
:func:`run`, which sets up (multi-host) devices, records the config, runs the experiment and
writes its named metrics atomically to ``<workdir>/results.json``.
"""

from __future__ import annotations

import importlib
import json
import logging as pylogging
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
from absl import logging

from robustml_jax.core import distributed
from robustml_jax.core.results import atomic_write_text, write_results

__all__ = ["CONFIG_NAMES", "define_main", "get_config", "run", "unknown_config"]

CONFIG_NAMES = ("smoke", "small", "full")


def unknown_config(arg: str, names=CONFIG_NAMES) -> ValueError:
    return ValueError(f"unknown config '{arg}'; choose one of: {', '.join(names)}")


def get_config(module: str, arg: str) -> ml_collections.ConfigDict:
    """Loads ``get_config(arg)`` from a config module (``experiments.<paper>.configs.default``)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ValueError(f"no config module '{module}' ({e})") from None
    return mod.get_config(arg)


class _QuietOrbax(pylogging.Filter):
    """Drops orbax's per-save INFO lines, which would bury the progress output."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def define_main(
    train_and_evaluate: Callable[..., Mapping[str, Any]],
) -> Callable[[list[str]], None]:
    """Defines ``--config`` / ``--workdir`` and returns the ``main(argv)`` to give ``app.run``.

    Call it once, at the top level of an experiment's ``main.py``::

        main = experiment.define_main(train.train_and_evaluate)
        if __name__ == "__main__":
            app.run(main)
    """
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, "Experiment config file (path:arg).")
    workdir = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and results.")
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        run(train_and_evaluate, config.value, workdir.value)

    return main


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
        raise ValueError(
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
