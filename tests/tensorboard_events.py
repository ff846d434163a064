"""Read TensorBoard event files back without TensorFlow or tensorboard: the TFRecord framing + tensorboardX's Event proto."""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event


def read_events(path: Path) -> list[Event]:
    """Every Event of one file (each record: u64 length, u32 crc, payload, u32 crc)."""
    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        payload = data[at + 12 : at + 12 + length]
        events.append(Event.FromString(payload))
        at += 12 + length + 4
    return events


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] over every event file of one run folder, in step order."""
    found: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in sorted(run.glob("events.out.tfevents.*")):
        for event in read_events(path):
            for value in event.summary.value:
                found[value.tag].append((event.step, value.simple_value))
    return {tag: sorted(points) for tag, points in found.items()}
