"""Draw the ledger ERD from the model's definitions: ``python -m marketpipe.etl.erd docs/ledger-erd.png``.

Generated, not hand-drawn, so the picture cannot drift from the tables the ETL writes. Needs the
Graphviz ``dot`` binary (``apt-get install graphviz``) to render; the DOT text is written beside it.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from marketpipe.etl.model import PARTITION_COLUMN, TABLES, ModelTable, TableKind

_COLORS = {TableKind.DIMENSION: "#dbeafe", TableKind.FACT: "#fde68a", TableKind.SNAPSHOT: "#fecaca"}


def _node(table: ModelTable) -> str:
    rows = [
        f'<tr><td colspan="3" bgcolor="{_COLORS[table.kind]}"><b>{table.name}</b><br/>'
        f'<font point-size="9">{html.escape(table.kind.value)}</font></td></tr>',
        f'<tr><td colspan="3" align="left"><font point-size="9"><i>grain: {html.escape(table.grain)}</i>'
        "</font></td></tr>",
    ]
    for col in table.columns:
        marks = ("PK " if col.name in table.key else "") + ("FK" if col.references else "")
        name = f"<u>{col.name}</u>" if col.name in table.key else col.name
        nullable = "" if not col.nullable else " NULL"
        rows.append(
            f'<tr><td port="{col.name}" align="left">{name}</td>'
            f'<td align="left">{html.escape(col.type.glue)}{nullable}</td>'
            f'<td align="left">{marks.strip()}</td></tr>'
        )
    if table.daily:
        rows.append(
            f'<tr><td align="left"><i>{PARTITION_COLUMN}</i></td><td align="left">string</td>'
            '<td align="left">partition</td></tr>'
        )
    body = "".join(rows)
    return f'  {table.name} [label=<<table border="0" cellborder="1" cellspacing="0">{body}</table>>];'


def to_dot(tables: Sequence[ModelTable] = TABLES) -> str:
    """Graphviz DOT text: one record per table, one edge per foreign key."""
    lines = [
        "digraph ledger {",
        '  graph [rankdir=LR, fontname="Helvetica", label="marketpipe ledger star schema", labelloc=t];',
        '  node [shape=plain, fontname="Helvetica"];',
        '  edge [arrowhead=crow, arrowtail=tee, dir=both, color="#555555"];',
    ]
    lines += [_node(t) for t in tables]
    for table in tables:
        for col in table.columns:
            if col.references:
                target, _, target_col = col.references.partition(".")
                lines.append(f"  {target}:{target_col} -> {table.name}:{col.name};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(png_path: Path, tables: Sequence[ModelTable] = TABLES) -> Path:
    """Write ``<name>.dot`` and render ``<name>.png`` with Graphviz; returns the DOT path."""
    dot_path = png_path.with_suffix(".dot")
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_path.write_text(to_dot(tables), encoding="utf-8")
    binary = shutil.which("dot")
    if binary is None:
        raise RuntimeError("Graphviz `dot` not found; install it (apt-get install graphviz)")
    subprocess.run([binary, "-Tpng", "-Gdpi=110", "-o", str(png_path), str(dot_path)], check=True)
    return dot_path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0] if args else "docs/ledger-erd.png")
    render(target)
    print(f"wrote {target} and {target.with_suffix('.dot')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
