"""Helpers shared by the papers' end-to-end tests (``tests/<paper>/test_experiment.py``).

``require_data(*names)`` skips the calling test module, with the first missing dataset's
how-to-get message, when the data dir lacks one of ``names``; ``smoke_run_fixture(report,
name)`` is a module-scoped fixture that runs the paper's ``report.run(workdir, "smoke")`` once
and returns ``(workdir, results.json as a dict, the PaperReport)``.
"""

from __future__ import annotations

import json

import pytest

from robustml_jax.core import datasets
from robustml_jax.core.datasets import DatasetNotFoundError


def require_data(*names) -> None:
    """Skips the calling test module unless every dataset in ``names`` is present (a name is a
    registered dataset, or a callable that raises ``DatasetNotFoundError``, e.g.
    ``bert.minilm_dir``)."""
    try:
        for name in names:
            name() if callable(name) else datasets.locate(name)
    except DatasetNotFoundError as e:  # pragma: no cover - depends on the data dir
        pytest.skip(f"{e.name} not found ({e.how})", allow_module_level=True)


def smoke_run_fixture(report, name: str):
    """A module-scoped fixture running ``report.run(workdir, "smoke")`` once."""

    @pytest.fixture(scope="module")
    def smoke_run(tmp_path_factory):
        workdir = tmp_path_factory.mktemp(f"{name}_smoke")
        rep = report.run(workdir, "smoke")
        return workdir, json.loads((workdir / "results.json").read_text()), rep

    return smoke_run
