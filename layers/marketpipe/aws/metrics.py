"""CloudWatch metrics in namespace ``marketpipe``, the contract with ``infra/constructs/dashboard.py``.

* Collector (Fargate): ``FramesIn`` (Exchange: every frame received, what the liveness alarm watches;
  and Exchange, Partition: per Kinesis partition, a Bitfinex slot ``slot-000`` or a Binance shard
  ``shard-0``), ``CollectorHeartbeat`` (Exchange, one per minute while the process lives), ``Errors``;
  aggregated in memory and sent with ``PutMetricData`` once a minute from a thread (the container has
  no CloudWatch agent to read EMF logs).
* Book builder (Lambda): ``RowsWritten`` (Table), ``Resyncs`` and ``ChecksumMismatches`` (Exchange),
  ``Errors``; printed as EMF log lines with Powertools, which costs no API call. ``service=""`` keeps
  Powertools from adding a ``service`` dimension the dashboard does not query.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "marketpipe"
Dimensions = tuple[tuple[str, str], ...]
_MAX_DATUMS_PER_CALL = 1000


class CollectorMetrics:
    """Counts frames per stream key and publishes them plus a heartbeat every ``interval`` seconds."""

    def __init__(
        self,
        client: Any,
        exchanges: Iterable[str],
        *,
        interval: float = 60.0,
        namespace: str = NAMESPACE,
        start: bool = True,
    ) -> None:
        self.client = client
        self.exchanges = list(exchanges)
        self.interval = interval
        self.namespace = namespace
        self._counts: dict[tuple[str, Dimensions], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.published = 0
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="collector-metrics", daemon=True)
            self._thread.start()

    def count(self, name: str, dimensions: Mapping[str, str] | None = None, value: float = 1) -> None:
        key = (name, tuple(sorted((dimensions or {}).items())))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + value

    def frame_in(self, exchange: str, partitions: Iterable[str]) -> None:
        """One received frame: counted once for the exchange (a single series whatever the number of
        symbols, so one alarm covers it) and once for each partition it was published to."""
        self.count("FramesIn", {"Exchange": exchange})
        for partition in partitions:
            self.count("FramesIn", {"Exchange": exchange, "Partition": partition})

    def publish(self, heartbeat: bool = True) -> int:
        """Send what was counted since the last call (kept for the next call if sending fails)."""
        with self._lock:
            counts, self._counts = self._counts, {}
        if heartbeat:
            for exchange in self.exchanges:
                key: tuple[str, Dimensions] = ("CollectorHeartbeat", (("Exchange", exchange),))
                counts[key] = counts.get(key, 0) + 1
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                "Value": value,
                "Unit": "Count",
            }
            for (name, dims), value in sorted(counts.items())
        ]
        try:
            for start in range(0, len(data), _MAX_DATUMS_PER_CALL):
                self.client.put_metric_data(
                    Namespace=self.namespace, MetricData=data[start : start + _MAX_DATUMS_PER_CALL]
                )
        except Exception as exc:  # metrics must never stop the collector; counts carry over
            log.warning("PutMetricData failed (%s); will retry with the next minute's data", exc)
            with self._lock:
                for key, value in counts.items():
                    if key[0] != "CollectorHeartbeat":
                        self._counts[key] = self._counts.get(key, 0) + value
            return 0
        self.published += len(data)
        return len(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.publish(heartbeat=False)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()


def emit_emf(metrics: Iterable[tuple[str, Mapping[str, str], float]]) -> None:
    """Print ``(name, dimensions, value)`` counts as EMF lines, one line per dimension set (Lambda)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    by_dims: dict[Dimensions, list[tuple[str, float]]] = {}
    for name, dimensions, value in metrics:
        by_dims.setdefault(tuple(sorted(dimensions.items())), []).append((name, value))
    for dims, values in by_dims.items():
        emf = EphemeralMetrics(namespace=NAMESPACE, service="")
        for dim_name, dim_value in dims:
            emf.add_dimension(name=dim_name, value=dim_value)
        for name, count in values:
            emf.add_metric(name=name, unit=MetricUnit.Count, value=count)
        emf.flush_metrics()
