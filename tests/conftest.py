"""Shared pytest fixtures."""

from __future__ import annotations

import gc
import pathlib

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Frees every test module's compiled XLA executables when the module ends.

    Each CPU executable keeps ~3 memory mappings (code, constants, data) for as long as a jit
    cache holds it. Over the whole suite that passed Linux's default ``vm.max_map_count``
    (65,530): the next mapping failed inside XLA and pytest died with a segfault (CI, in
    tests/xmc). Clearing the caches per module keeps the count at one module's worth.
    """
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def x64():
    """Enables float64 inside one test (never at module level)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty decoded-array cache for tests that must not reuse the user's cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("ROBUSTML_CACHE_DIR", str(d))
    return d
