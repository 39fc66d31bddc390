"""Figures without pyplot's global state.

Library and experiment code builds figures with :func:`subplots`, which makes a plain
``matplotlib.figure.Figure`` (rendered by the Agg canvas when saved). It never calls
``matplotlib.use`` or touches ``pyplot``, so it neither changes the backend a notebook chose nor
leaks figures into pyplot's registry. Save with :func:`save` (atomic, from
:func:`robustml_jax.core.results.save_figure`); in a notebook, :func:`show` displays a figure, or
a saved PNG, inline.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

__all__ = ["colormap", "save", "show", "subplots"]


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs: Any
):
    """Like ``plt.subplots`` but returns a pyplot-free ``(Figure, axes)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=kwargs.pop("layout", None))
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def colormap(name: str):
    """A registered matplotlib colormap by name (``"tab10"``, ``"viridis"``, ...)."""
    import matplotlib

    return matplotlib.colormaps[name]


def save(fig, path: str | os.PathLike, *, dpi: int = 120) -> pathlib.Path:
    """Atomically saves ``fig`` (format from the suffix)."""
    from robustml_jax.core.results import save_figure

    return save_figure(fig, path, dpi=dpi)


def show(fig_or_path) -> None:
    """Displays a figure or an image file inline in IPython/Jupyter (does nothing elsewhere)."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    if isinstance(fig_or_path, str | os.PathLike):
        display(Image(filename=os.fspath(fig_or_path)))
        return
    import io

    buf = io.BytesIO()
    fig_or_path.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    display(Image(data=buf.getvalue()))
