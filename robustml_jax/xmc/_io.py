"""Saving and loading tree models, atomically.

A model folder holds ``arrays/`` (orbax) and ``meta.json``. It is written into a temporary
sibling folder and renamed into place once complete, so a folder that exists is a whole model
(a kill during the save leaves only a ``.tmp-*`` sibling). :func:`model_items` gives a
:class:`~robustml_jax.core.workitems.WorkItems` of models (ensemble members that resume).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid

import jax.numpy as jnp
import numpy as np

from robustml_jax.core.workitems import WorkItems
from robustml_jax.xmc._rankers import Level
from robustml_jax.xmc._tree import TreeModel

__all__ = ["load_model", "model_items", "save_model"]

_LEVEL_FIELDS = ("indptr", "feat", "w", "bias", "valid")


def _write(model: TreeModel, path: pathlib.Path) -> None:
    import orbax.checkpoint as ocp

    tree = {
        "levels": {
            f"{i:03d}": {k: np.asarray(getattr(lv, k)) for k in _LEVEL_FIELDS}
            for i, lv in enumerate(model.levels)
        },
        "slot_label": np.asarray(model.slot_label),
    }
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path / "arrays", tree)
    ckptr.wait_until_finished()
    ckptr.close()
    meta = {"num_features": model.num_features, "num_labels": model.num_labels, "post": model.post}
    (path / "meta.json").write_text(json.dumps(meta))


def save_model(model: TreeModel, path: str | os.PathLike) -> pathlib.Path:
    """Saves ``model`` into the new folder ``path`` atomically (temp folder, then rename).

    Raises:
      FileExistsError: ``path`` exists already.
    """
    path = pathlib.Path(path).absolute()
    if path.exists():
        raise FileExistsError(f"{path} exists; save a tree model into a new folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _write(model, tmp)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model(path: str | os.PathLike) -> TreeModel:
    """Loads a model written by :func:`save_model`.

    Raises:
      FileNotFoundError: no saved model in ``path``.
    """
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no saved tree model in {path} (meta.json missing)")
    meta = json.loads(meta_file.read_text())
    ckptr = ocp.StandardCheckpointer()
    try:
        tree = ckptr.restore(path / "arrays")
    finally:
        ckptr.close()
    levels = tuple(
        Level(**{k: jnp.asarray(v) for k, v in tree["levels"][name].items()})
        for name in sorted(tree["levels"])
    )
    return TreeModel(
        levels=levels,
        slot_label=jnp.asarray(tree["slot_label"]),
        num_features=int(meta["num_features"]),
        num_labels=int(meta["num_labels"]),
        post=meta["post"],
    )


def _save_into(folder: pathlib.Path, model: TreeModel) -> None:
    folder.mkdir(parents=True)
    _write(model, folder)


def model_items(directory: str | os.PathLike) -> WorkItems:
    """A :class:`WorkItems` folder of tree models: ``items.get(name, fit)`` trains a model once,
    saves it atomically and reloads it on later runs."""
    return WorkItems(directory, save=_save_into, load=load_model)
