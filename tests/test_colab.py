"""Executes every notebook in colab/ with its smoke config (nbclient).

Cells tagged `colab_setup` (pip install from the repository, Drive mounts) are skipped; the cell
tagged `parameters` is replaced by `CONFIG_NAME = "smoke"`. Notebooks run with the repository
root as working directory, must finish without an error and must show at least one plot inline
(an `image/png` output, e.g. from `robustml_jax.core.plotting.show`). A notebook whose dataset is
absent (a `DatasetNotFoundError` raised in a cell) is skipped with the dataset's how-to-get
message.
"""

from __future__ import annotations

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "colab").glob("*.ipynb"))


def prepare(nb):
    """Drops set-up cells and switches the parameters cell to the smoke config."""
    cells = []
    has_params = False
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "colab_setup" in tags:
            continue
        if "parameters" in tags:
            cell = nbformat.v4.new_code_cell('CONFIG_NAME = "smoke"')
            has_params = True
        cells.append(cell)
    nb.cells = cells
    return nb, has_params


def test_every_notebook_has_setup_and_parameters_cells():
    assert NOTEBOOKS, "colab/ has no notebooks"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        tags = first.get("metadata", {}).get("tags", [])
        assert "colab_setup" in tags, f"{path.name}: the first code cell must be the Colab set-up"
        assert "pip install" in first.source, f"{path.name}: set-up cell must install the package"
        _, has_params = prepare(nb)
        assert has_params, f"{path.name}: no cell tagged 'parameters'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_config(path):
    nb, _ = prepare(nbformat.read(path, as_version=4))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        if e.ename == "DatasetNotFoundError":
            pytest.skip(f"{path.name}: {e.evalue}")
        raise
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), (
        f"{path.name} shows no plot inline (no image/png output; use plotting.show(fig))"
    )
