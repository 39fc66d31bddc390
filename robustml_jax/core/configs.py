"""Shared experiment-config building blocks (big_vision style).

Every paper's ``experiments/<paper>/configs/default.py`` builds its documented default on top
of :func:`base` and expresses ``smoke`` / ``small`` / ``full`` (and any named variant) as small
flat overrides applied by :func:`variant`::

    VARIANTS = {
        "smoke": {"num_steps": 40, "progress": False},
        "small": {},                                   # the documented default
        "full": {"num_steps": 5000, "data.limit": 0},  # dotted keys reach nested fields
    }

    def get_config(arg="small"):
        c = configs.base(seed=0)
        c.num_steps = 600
        ...
        return configs.variant(c, arg, VARIANTS)

and may define ``validate(config)`` (raising :class:`ConfigError` through :func:`check`), which
its main passes to ``experiment.define_main`` so that a bad ``--config.x=...`` override ends in
one clear line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from robustml_jax.core.errors import ConfigError

__all__ = ["ConfigError", "base", "check", "unknown_config", "variant"]


def base(**fields: Any) -> ml_collections.ConfigDict:
    """The fields every experiment config has, plus ``fields``.

    - ``seed``: the root PRNG seed.
    - ``progress``: show progress bars.
    - ``num_devices``: devices in the data-parallel mesh (0 = all).
    - ``distributed``: ``coordinator_address`` / ``num_processes`` / ``process_id`` for a
      multi-process run (see :mod:`robustml_jax.core.distributed`).
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.progress = True
    c.num_devices = 0
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0}
    )
    for k, v in fields.items():
        c[k] = v
    return c


def unknown_config(arg: str, names) -> ConfigError:
    return ConfigError(f"unknown config '{arg}'; choose one of: {', '.join(names)}")


def variant(
    config: ml_collections.ConfigDict, arg: str, variants: Mapping[str, Mapping[str, Any]]
) -> ml_collections.ConfigDict:
    """Applies the flat overrides ``variants[arg]`` (dotted keys for nested fields)."""
    if arg not in variants:
        raise unknown_config(arg, variants)
    overrides = dict(variants[arg])
    for key in overrides:
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"variant '{arg}' overrides '{key}', which the default does not have")
    config.update_from_flattened_dict(overrides)
    return config


def check(config, name: str, ok: Callable[[Any], bool], what: str) -> None:
    """Raises :class:`ConfigError` ``config.<name>=<value>: must be <what>`` unless ``ok``."""
    node = config
    for part in name.split("."):
        node = node[part]
    try:
        good = bool(ok(node))
    except Exception:  # a type the predicate cannot handle is as bad as a failed check
        good = False
    if not good:
        raise ConfigError(f"config.{name}={node!r}: must be {what}")
