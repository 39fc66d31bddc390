"""Shared pytest fixtures."""

from __future__ import annotations

import pathlib

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


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
