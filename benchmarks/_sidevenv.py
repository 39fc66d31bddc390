"""Side virtual environments for benchmarks that compare against another implementation.

Some baselines (libpecos, PyTorch T5, sentence-transformers, auto_LiRPA) pin packages that clash
with this suite's environment, so each runs in its own venv, driven over a subprocess. This is
the one place that creates such a venv:

    py, note = ensure_venv(
        pathlib.Path("/tmp/pecos_venv"),
        check="import pecos.xmc.xlinear",
        plans=[[["--no-deps", "libpecos"], ["numpy<2", "scipy<1.14", "scikit-learn"]]],
    )

``plans`` are alternatives tried in order (the first that ends with ``check`` importing wins);
each plan is a list of ``pip install`` argument lists run one after the other. The result is
``(python, note)`` or ``(None, why not)``: a benchmark records the note and reports the baseline
as NOT RUN instead of failing, so it still runs offline.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections.abc import Sequence


def _base_python() -> str:
    # The system Python keeps the side venv independent of this suite's venv.
    return "/usr/bin/python3" if pathlib.Path("/usr/bin/python3").exists() else sys.executable


def _tail(text: str, n: int = 300) -> str:
    return text.strip()[-n:]


def ensure_venv(
    venv: pathlib.Path,
    *,
    check: str,
    plans: Sequence[Sequence[Sequence[str]]],
    base_python: str | None = None,
) -> tuple[pathlib.Path | None, str]:
    """Returns ``(venv python, note)`` once ``check`` imports there, creating the venv if needed.

    Args:
      venv: the folder of the side venv (reused when ``check`` already imports in it).
      check: Python source run with the venv's python to decide it is ready.
      plans: alternative installs, tried in order; each is a list of ``pip install`` argument
        lists (e.g. ``[["torch==2.13.0", "transformers"]]``).
      base_python: the interpreter that creates the venv (default: the system python3).
    Returns:
      ``(python, "existing venv" | "created with ...")`` or ``(None, why it could not be made)``.
    """
    if not plans:
        raise ValueError("ensure_venv: plans is empty (give at least one list of pip installs)")
    py = venv / "bin" / "python"
    probe = [str(py), "-c", check]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py, "existing venv"
    if not py.exists():
        r = subprocess.run(
            [base_python or _base_python(), "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if r.returncode != 0:
            return None, f"python -m venv {venv} failed: {_tail(r.stderr)}"
    errors = []
    for plan in plans:
        failed = None
        for args in plan:
            r = subprocess.run(
                [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                failed = f"pip install {' '.join(args)}: {_tail(r.stderr)}"
                break
        if failed is None:
            done = subprocess.run(probe, capture_output=True, text=True)
            if done.returncode == 0:
                return py, "created with " + "; ".join("pip install " + " ".join(a) for a in plan)
            failed = f"installed, but `{check}` fails: {_tail(done.stderr)}"
        errors.append(failed)
    return None, " | ".join(errors)
