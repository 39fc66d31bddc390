"""Fixtures shared by the tests of the core."""

from __future__ import annotations

import pytest

from tests.core import worked_example


@pytest.fixture(scope="session")
def resumed_run(tmp_path_factory):
    """The worked example on 4 CPU devices, SIGKILLed after its checkpoint at step >= 40 and
    re-run to the end (resumed); returns ``(workdir, step it resumed from)``. Shared by the
    resume and TensorBoard tests, which read different files of the same run."""
    workdir = tmp_path_factory.mktemp("worked_example") / "four_killed"
    killed_at = worked_example.kill_midway(workdir, devices=4)
    worked_example.run(workdir, devices=4)
    return workdir, killed_at
