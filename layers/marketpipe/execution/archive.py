"""Raw book snapshots kept as received, gzip-compressed, in the lake: one object per snapshot.

``<lake>/execution_raw/exchange=<venue>/dt=YYYY-MM-DD/hour=HH/<market>-<YYYYMMDDTHHMMSS.ffffff>Z.jsonl.gz``
holds two raw-capture lines (the same JSON-lines format as ``raw/``): the ``config`` record (the
notionals) and the body exactly as received. The name is a function of the snapshot, so a retried
write replaces the same object; ``marketpipe replay <lake>/execution_raw`` rebuilds every execution
row from the lake alone (this is how the AWS side is replayed).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from decimal import Decimal

from marketpipe.execution.processor import CAPTURE_EXCHANGE, CONFIG_CONN, config_frame
from marketpipe.lake import make_dirs, open_location
from marketpipe.records import RawFrame
from marketpipe.timeutil import us_to_datetime

RAW_PREFIX = "execution_raw"


def object_path(root: str, venue: str, market: str, received_ts: int) -> str:
    dt = us_to_datetime(received_ts)
    return (
        f"{root}/{RAW_PREFIX}/exchange={venue}/{dt:dt=%Y-%m-%d/hour=%H}/"
        f"{market}-{dt:%Y%m%dT%H%M%S.%f}Z.jsonl.gz"
    )


def write_snapshot(
    lake_uri: str, venue: str, market: str, frame: RawFrame, notionals: Sequence[Decimal]
) -> str:
    """Store one snapshot (with its config record) gzip-compressed; returns the object path."""
    lake = open_location(lake_uri)
    fs, path = lake.fs, object_path(lake.path, venue, market, frame.received_ts)
    config = RawFrame(CAPTURE_EXCHANGE, CONFIG_CONN, "in", frame.received_ts, config_frame(notionals))
    data = gzip.compress(config.to_line() + b"\n" + frame.to_line() + b"\n", mtime=0)
    make_dirs(fs, path.rsplit("/", 1)[0])
    with fs.open_output_stream(path, compression=None) as out:  # already gzip: no "detect" by suffix
        out.write(data)
    return path
