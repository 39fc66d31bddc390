"""Errors that mean "the user's input is wrong", as opposed to a bug in the suite.

Experiment mains (:func:`robustml_jax.core.experiment.app_run`) print a :class:`UserError` as
one line and exit with status 2; every other exception keeps its traceback. Each class also
derives from the built-in a caller would catch (``ValueError``, ``FileNotFoundError``, ...).
"""

from __future__ import annotations

__all__ = ["ConfigError", "UserError"]


class UserError(Exception):
    """Base class: wrong input (config, data, files), reported without a traceback."""


class ConfigError(UserError, ValueError):
    """An invalid config: unknown config name, a value out of range, a bad override."""
