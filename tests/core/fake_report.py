"""A stand-in paper report for testing experiments/reproduce.py; its behaviour follows the
workdir's name (`fake_ok`, `fake_skip`, `fake_crash`)."""

import pathlib

from robustml_jax.core import datasets
from robustml_jax.core.report import PaperReport, Row, report_main
from robustml_jax.core.results import save_figure


def run(workdir: pathlib.Path, scale: str) -> PaperReport:
    if workdir.name == "fake_skip":
        raise datasets.DatasetNotFoundError("cifar10", ["/nowhere"], "fetch it")
    if workdir.name == "fake_crash":
        raise RuntimeError("boom in the paper's code")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, workdir / "curve.png")
    n = len(datasets.load("digits", "all")["label"])
    return PaperReport(
        rows=[Row("digits rows", n, None, "sklearn digits", scale)],
        plots=["curve.png"],
        summary="ok.",
    )


if __name__ == "__main__":
    report_main(run)
