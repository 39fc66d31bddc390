"""benchmarks._sidevenv: plans are tried in order, the first that makes `check` import wins."""

import pathlib
import subprocess
import types

import pytest

from benchmarks import _sidevenv


class _FakePip:
    """Stands in for subprocess.run: `installable` packages install, anything else fails."""

    def __init__(self, installable, ready_after):
        self.installable, self.ready_after, self.installed, self.calls = (
            installable,
            ready_after,
            set(),
            [],
        )

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            py = pathlib.Path(cmd[3]) / "bin" / "python"
            py.parent.mkdir(parents=True)
            py.touch()
            return types.SimpleNamespace(returncode=0, stderr="")
        if cmd[1] == "-c":  # the readiness probe
            ok = self.ready_after <= self.installed
            return types.SimpleNamespace(returncode=0 if ok else 1, stderr="ModuleNotFoundError")
        pkgs = [a for a in cmd[5:] if not a.startswith("-")]
        if all(p in self.installable for p in pkgs):
            self.installed.update(pkgs)
            return types.SimpleNamespace(returncode=0, stderr="")
        return types.SimpleNamespace(returncode=1, stderr=f"no wheel for {pkgs}")


def test_first_working_plan_wins_and_venv_is_reused(tmp_path, monkeypatch):
    fake = _FakePip(installable={"b", "c"}, ready_after={"b", "c"})
    monkeypatch.setattr(subprocess, "run", fake)
    py, note = _sidevenv.ensure_venv(
        tmp_path / "v", check="import b", plans=[[["a"]], [["b"], ["c"]]]
    )
    assert py == tmp_path / "v" / "bin" / "python"
    assert note == "created with pip install b; pip install c"
    py2, note2 = _sidevenv.ensure_venv(tmp_path / "v", check="import b", plans=[[["a"]]])
    assert (py2, note2) == (py, "existing venv")


def test_failure_names_every_plan(tmp_path, monkeypatch):
    fake = _FakePip(installable={"a"}, ready_after={"zzz"})
    monkeypatch.setattr(subprocess, "run", fake)
    py, note = _sidevenv.ensure_venv(tmp_path / "v", check="import zzz", plans=[[["a"]], [["b"]]])
    assert py is None
    assert "installed, but `import zzz` fails" in note and "no wheel for ['b']" in note


def test_empty_plans_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="plans is empty"):
        _sidevenv.ensure_venv(tmp_path / "v", check="import x", plans=[])
