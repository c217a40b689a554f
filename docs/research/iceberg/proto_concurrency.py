"""Q3: batch markers, exactly-once check, concurrent committers on one Glue table (moto).

Scenarios (each on a fresh table):
  A  moto as shipped (UpdateTable ignores VersionId), 2 threads x 10 appends, pyiceberg default retries
  B  moto patched to enforce VersionId like real Glue, 2 threads x 10 appends, default retries (4)
  C  patched, 4 threads x 10 appends, default retries
  D  patched, exactly-once loop (commit.retry.num-retries=0, re-check marker each attempt);
     2 threads both try to commit the SAME 10 batch ids (duplicate delivery)
  E  same as D but with pyiceberg's auto-retry left on (default 4) and only a pre-check -> duplicates?
  F  watermark in table properties committed in the same transaction as the append
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import sys
import threading
import time

from harness import SCHEMA, SPEC, batch, glue_catalog, patch_moto_glue_version_check, start_server
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

BATCH_KEY = "marketpipe.batch"


class RetryLogCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.n += 1


retry_log = RetryLogCounter()
logging.getLogger("pyiceberg").addHandler(retry_log)
logging.getLogger("pyiceberg").setLevel(logging.WARNING)


def committed_batches(tbl: Table) -> list[str]:
    """All batch ids found in the summaries of the snapshots still in metadata (expired ones are gone!)."""
    out = []
    for s in tbl.metadata.snapshots:
        if s.summary is not None and (b := s.summary.get(BATCH_KEY)) is not None:
            out.append(b)
    return out


def batch_already_committed(tbl: Table, batch_id: str) -> bool:
    return batch_id in committed_batches(tbl)


def append_exactly_once(catalog, ident: str, df, batch_id: str, max_attempts: int = 20) -> str:
    """Reload, check marker, append with marker; on conflict start over (re-checking the marker).

    Needs the table property commit.retry.num-retries=0, otherwise pyiceberg's own retry rebases the
    snapshot onto the new head WITHOUT re-checking our marker.
    """
    for attempt in range(max_attempts):
        tbl = catalog.load_table(ident)
        if batch_already_committed(tbl, batch_id):
            return "skipped-duplicate"
        try:
            tbl.append(df, snapshot_properties={BATCH_KEY: batch_id})
            return "committed" if attempt == 0 else f"committed-after-{attempt}-conflicts"
        except CommitFailedException:
            time.sleep(min(0.05 * 2**attempt, 2.0) * random.uniform(0.5, 1.5))
    raise RuntimeError(f"gave up on {batch_id}")


def run_threads(n_threads: int, work) -> tuple[list, list]:
    results, errors = [], []
    lock = threading.Lock()

    def runner(i: int) -> None:
        try:
            r = work(i)
            with lock:
                results.append(r)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"{type(e).__name__}: {str(e)[:160]}")

    ts = [threading.Thread(target=runner, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results, errors


def scenario_plain(server, name: str, n_threads: int, n_appends: int, props: dict | None = None) -> None:
    cat = glue_catalog(server)
    ident = f"marketpipe.{name}"
    cat.create_table(ident, schema=SCHEMA, partition_spec=SPEC, properties=props or {})
    retry_log.n = 0
    start = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)

    def work(i: int):
        c = glue_catalog(server)  # one catalog per "Lambda"
        ok, failed = [], []
        for j in range(n_appends):
            tbl = c.load_table(ident)
            try:
                tbl.append(batch(2, 5, start, seed=i * 1000 + j), snapshot_properties={BATCH_KEY: f"t{i}-b{j}"})
                ok.append(f"t{i}-b{j}")
            except Exception as e:  # noqa: BLE001  (CommitFailedException, ValidationException, ...)
                failed.append(f"t{i}-b{j}: {type(e).__name__}: {str(e)[:100]}")
        return ok, failed

    t0 = time.perf_counter()
    results, errors = run_threads(n_threads, work)
    el = time.perf_counter() - t0
    tbl = cat.load_table(ident)
    rows = tbl.scan().to_arrow().num_rows
    ok_marks = [m for r in results for m in r[0]]
    ok = len(ok_marks)
    failed = [f for r in results for f in r[1]]
    marks = committed_batches(tbl)
    lost = sorted(set(ok_marks) - set(marks))
    print(
        f"[{name}] threads={n_threads} appends/thread={n_appends} reported-ok={ok} raised={len(failed)} "
        f"LOST(reported ok but not in table)={len(lost)} "
        f"other-errors={len(errors)} pyiceberg-retries-logged={retry_log.n} snapshots={len(tbl.metadata.snapshots)} "
        f"distinct-markers={len(set(marks))} rows={rows} expected-rows-for-ok={ok * 10} wall={el:.1f}s"
    )
    import boto3

    from harness import BUCKET, REGION

    s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.url)
    prefix = tbl.location().split(BUCKET + "/")[1] + "/data/"
    n_obj = sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix))
    print(f"   data objects in S3={n_obj} referenced by current snapshot={len(list(tbl.scan().plan_files()))}")
    for f in failed[:4]:
        print("   raised:", f)
    for e in errors[:3]:
        print("   error:", e)


def scenario_exactly_once(server, name: str, props: dict, use_loop: bool) -> None:
    cat = glue_catalog(server)
    ident = f"marketpipe.{name}"
    cat.create_table(ident, schema=SCHEMA, partition_spec=SPEC, properties=props)
    retry_log.n = 0
    start = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    batch_ids = [f"shard-0:{j:06d}" for j in range(10)]

    def work(i: int):
        c = glue_catalog(server)
        outcomes = []
        for j, b in enumerate(batch_ids):
            df = batch(2, 5, start, seed=j)  # same content for the same batch id
            if use_loop:
                outcomes.append(append_exactly_once(c, ident, df, b))
            else:  # naive: pre-check once, then rely on pyiceberg's auto-retry
                tbl = c.load_table(ident)
                if batch_already_committed(tbl, b):
                    outcomes.append("skipped-duplicate")
                    continue
                tbl.append(df, snapshot_properties={BATCH_KEY: b})
                outcomes.append("committed")
        return outcomes

    results, errors = run_threads(2, work)
    tbl = cat.load_table(ident)
    marks = committed_batches(tbl)
    rows = tbl.scan().to_arrow().num_rows
    flat = [o for r in results for o in r]
    summary = {k: flat.count(k) for k in sorted(set(flat))}
    dups = {b: marks.count(b) for b in set(marks) if marks.count(b) > 1}
    print(
        f"[{name}] loop={use_loop} outcomes={summary} errors={errors[:2]} pyiceberg-retries-logged={retry_log.n} "
        f"markers={len(marks)} distinct={len(set(marks))} duplicated-batches={len(dups)} rows={rows} (exactly-once=100)"
    )


def scenario_watermark(server) -> None:
    """Batch marker AND a per-shard watermark in table properties, committed atomically."""
    cat = glue_catalog(server)
    ident = "marketpipe.watermark"
    tbl = cat.create_table(ident, schema=SCHEMA, partition_spec=SPEC)
    start = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    for seq in (41, 42):
        tbl = cat.load_table(ident)
        with tbl.transaction() as tx:
            tx.append(batch(2, 5, start, seed=seq), snapshot_properties={BATCH_KEY: f"shard-0:{seq}"})
            tx.set_properties({"marketpipe.watermark.shard-0": str(seq)})
    tbl = cat.load_table(ident)
    print(
        "[watermark] properties:",
        {k: v for k, v in tbl.properties.items() if k.startswith("marketpipe")},
        "snapshots:", len(tbl.metadata.snapshots),
        "summary ops:", [s.summary.operation.value for s in tbl.metadata.snapshots],
    )


if __name__ == "__main__":
    server = start_server()
    cat = glue_catalog(server)
    cat.create_namespace("marketpipe")
    which = sys.argv[1:] or ["A", "B", "C", "D", "E", "F"]
    if "A" in which:
        scenario_plain(server, "conc_unpatched", 2, 10)
    patch_moto_glue_version_check()
    if "B" in which:
        scenario_plain(server, "conc_2x10", 2, 10)
    if "C" in which:
        scenario_plain(server, "conc_4x10", 4, 10)
    if "D" in which:
        scenario_exactly_once(server, "eo_loop", {"commit.retry.num-retries": "0"}, use_loop=True)
    if "E" in which:
        scenario_exactly_once(server, "eo_naive", {}, use_loop=False)
    if "F" in which:
        scenario_watermark(server)
    server.stop()
