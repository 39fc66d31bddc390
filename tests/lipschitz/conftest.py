"""Fixtures for the Lipschitz tests."""

import jax
import pytest


@pytest.fixture
def x64():
    """Enables float64 inside one test (never at module level)."""
    with jax.enable_x64(True):
        yield
