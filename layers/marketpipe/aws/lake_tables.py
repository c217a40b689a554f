"""The Iceberg tables of the AWS lake: created at deploy time, their snapshots expired on a schedule.

``handle_deploy`` is a CloudFormation custom resource (CDK Provider framework), like the MySQL schema
migration: Create and Update create any missing table with its schema, hidden partitions and
properties (pyiceberg; CloudFormation cannot express an Iceberg partition spec, and a ``CfnTable``
would overwrite ``metadata_location`` on the next stack update). Delete keeps the tables and their data.

``handle_maintenance`` runs from an EventBridge schedule and expires old snapshots, which bounds the
``metadata.json`` every commit reads and rewrites. Compaction and the deletion of unreferenced files
are the Glue table optimizers' (docs/AWS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from marketpipe import envnames
from marketpipe.tables.bitfinex import BITFINEX_TABLES

log = logging.getLogger(__name__)

PHYSICAL_ID = "marketpipe-iceberg-tables"
DEFAULT_SNAPSHOT_HOURS = 0.5
"""Snapshots kept: Athena reads in flight and Glue compaction runs need theirs; each commit reads and
rewrites every snapshot kept (~1 KB each, ~180 per writer at one append per 10 s)."""


def _catalog(env: Mapping[str, str]) -> tuple[Any, Any]:
    from marketpipe.sinks.iceberg_sink import CatalogSpec

    spec = CatalogSpec.parse(env[envnames.ICEBERG_CATALOG])
    return spec, spec.open(env)


def handle_deploy(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    if event.get("RequestType") in ("Create", "Update"):
        from marketpipe.sinks.iceberg_sink import ensure_tables

        spec, catalog = _catalog(env)
        created = ensure_tables(catalog, spec.namespace, spec.warehouse, BITFINEX_TABLES)
        log.info("Iceberg tables ready in %s (created: %s)", spec.namespace, ", ".join(created) or "none")
    return {"PhysicalResourceId": PHYSICAL_ID}


def handle_maintenance(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    from marketpipe.sinks.iceberg_sink import expire_snapshots

    spec, catalog = _catalog(env)
    hours = float(env.get(envnames.ICEBERG_SNAPSHOT_HOURS) or DEFAULT_SNAPSHOT_HOURS)
    expired = expire_snapshots(catalog, spec.namespace, [t.name for t in BITFINEX_TABLES], hours * 3600)
    log.info("expired snapshots older than %.1f h: %s", hours, expired)
    return {"expired": expired}
