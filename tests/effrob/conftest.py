"""Fixtures for the effrob tests."""

import jax
import pytest


@pytest.fixture
def x64():
    """Float64 inside one test. Overrides the suite-wide fixture, which calls
    ``jax.experimental.enable_x64`` (absent in jax 0.10); ``jax.enable_x64`` is its successor."""
    with jax.enable_x64(True):
        yield
