"""The pieces a section is made of (text, table, figure, group ...) and the page they are placed on.

A block is a plain dict the template renders by its ``kind``; every string in it is escaped by
jinja2's autoescape, tables arrive as :class:`markupsafe.Markup` built by
:func:`cordatlas.report.tables.page_table` (cells escaped there).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cordatlas.report.tables import page_table

Block = dict[str, Any]


def text(value: str) -> Block:
    return {"kind": "text", "text": value}


def items(values: Sequence[str]) -> Block:
    return {"kind": "list", "items": list(values)}


def pre(value: str) -> Block:
    return {"kind": "pre", "text": value}


def absent(what: str) -> Block:
    """Say that an input is not there (never a silent gap)."""
    return {"kind": "absent", "text": f"Not available: {what}."}


def link(href: str, label: str) -> Block:
    return {"kind": "link", "href": href, "text": label}


def group(
    title: str, blocks: Sequence[Block], *, anchor: str | None = None, badge: str | None = None,
    open: bool = False,
) -> Block:  # fmt: skip
    """A titled, collapsible group of blocks (``<details>``), optionally an anchor target."""
    return {
        "kind": "group",
        "title": title,
        "id": anchor,
        "badge": badge,
        "open": open,
        "blocks": list(blocks),
    }


@dataclass
class Page:
    """Where the report is written: figures are copied beside it, table ids kept unique."""

    out_dir: Path
    results_dir: Path
    alpha: float
    contrast: tuple[str, str]
    _ids: set[str] = field(default_factory=set)

    def figure(self, path: str | None, caption: str, *, alt: str | None = None) -> Block:
        """A figure copied into ``figures/`` beside the page, or an 'absent' line."""
        if not path or not Path(path).is_file():
            return absent(f"figure {Path(path).name if path else caption}")
        source = Path(path)
        relative = os.path.relpath(source.resolve(), self.results_dir.resolve())
        if relative.startswith(".."):
            digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
            relative = os.path.join("other", f"{digest}_{source.name}")
        target = self.out_dir / "figures" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        src = "figures/" + Path(relative).as_posix()
        return {"kind": "figure", "src": src, "caption": caption, "alt": alt or caption}

    def table(
        self,
        table: pd.DataFrame,
        name: str,
        *,
        caption: str | None = None,
        links: Mapping[str, Callable[[pd.Series], str | None]] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Block:
        """A sortable table with a unique id derived from `name`."""
        base = "t-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)
        table_id, i = base, 1
        while table_id in self._ids:
            i += 1
            table_id = f"{base}-{i}"
        self._ids.add(table_id)
        present = [c for c in columns if c in table] if columns is not None else None
        html = page_table(table, table_id=table_id, links=links, columns=present)
        return {"kind": "table", "html": html, "caption": caption, "id": table_id}

    def href(self, path: str) -> str:
        """A link from the page to a results file (relative, so the folder can move whole)."""
        return Path(os.path.relpath(Path(path).resolve(), self.out_dir.resolve())).as_posix()


def section(anchor: str, title: str, blocks: Sequence[Block], *, summary: str = "") -> Block:
    """One top-level section: its anchor, its title in the table of contents, its blocks."""
    return {"id": anchor, "title": title, "summary": summary, "blocks": list(blocks)}
