"""Make moto's Glue enforce ``UpdateTable(VersionId=…)`` as real Glue does.

moto 5 ignores the version, so two concurrent Iceberg commits both "succeed" and one is silently lost
(docs/research/iceberg/NOTES.md §3); real Glue answers ``ConcurrentModificationException`` to the
stale one. Patched in the process that hosts the moto server; a test of concurrent commits means
nothing without it.
"""

from __future__ import annotations

import threading
from typing import Any

_patched = False


def enforce_glue_table_versions() -> None:
    global _patched
    if _patched:
        return
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import EmptyResult
    from moto.glue.models import GlueBackend
    from moto.glue.responses import GlueResponse

    lock = threading.Lock()
    original = GlueBackend.update_table

    def update_table(
        self: Any, database_name: str, table_name: str, table_input: Any, version_id: Any = None
    ) -> Any:
        with lock:
            table = self.get_table(database_name, table_name)
            if version_id is not None and str(version_id) != str(table._current_version):
                raise JsonRESTError(
                    "ConcurrentModificationException",
                    f"stale VersionId {version_id}, current {table._current_version}",
                )
            return original(self, database_name, table_name, table_input)

    def respond_update_table(self: Any) -> Any:
        table_input = self.parameters.get("TableInput")
        self.glue_backend.update_table(
            self.parameters.get("DatabaseName"),
            table_input.get("Name"),
            table_input,
            self.parameters.get("VersionId"),
        )
        return EmptyResult()

    GlueBackend.update_table = update_table  # type: ignore[method-assign]
    GlueResponse.update_table = respond_update_table  # type: ignore[method-assign]
    _patched = True
