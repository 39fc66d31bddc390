"""Shared core: data sources, train state and loop, checkpointing, sharding, results, reports."""

from robustml_jax.core import (
    checkpoint,
    datasets,
    distributed,
    experiment,
    fetch,
    paths,
    report,
    results,
    sharding,
    train,
)
from robustml_jax.core.checkpoint import Checkpointer, CheckpointError
from robustml_jax.core.datasets import DatasetNotFoundError
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.report import PaperReport, Row
from robustml_jax.core.results import MetricsLogger, save_figure, write_results
from robustml_jax.core.train import (
    LoopConfig,
    TrainState,
    create_train_state,
    epoch_batches,
    make_train_step,
    train_loop,
)

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "DatasetNotFoundError",
    "LoopConfig",
    "MetricsLogger",
    "PaperReport",
    "Row",
    "Runtime",
    "TrainState",
    "checkpoint",
    "create_train_state",
    "datasets",
    "distributed",
    "epoch_batches",
    "experiment",
    "fetch",
    "make_train_step",
    "paths",
    "report",
    "results",
    "save_figure",
    "sharding",
    "train",
    "train_loop",
    "write_results",
]
