"""Skip data-dependent effrob tests, with the how-to-get message, when a dataset is absent."""

from __future__ import annotations

import pytest

from experiments.effrob import train


def skip_without_data(config) -> None:
    """``pytest.skip`` with the first missing dataset's how-to-get message."""
    for task in config.tasks.split(","):
        missing = train.missing_datasets(config, task.strip())
        if missing:
            pytest.skip(missing[0])
