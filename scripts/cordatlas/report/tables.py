"""Reading the workflow's TSV tables for the report, and showing them as sortable tables offline.

Every cell reaches the page escaped: text through :func:`markupsafe.escape` before itables sees
it, links built here from escaped parts. itables runs in its offline mode (DataTables inlined
once per page by :func:`offline_init`), so the page needs no network.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

#: Strings read as a missing number in an otherwise numeric column.
_MISSING = {"", "nan", "NaN"}

#: Rows shown per page before a table pages.
PAGE_LENGTH = 15

#: Text columns with cells longer than this wrap in a wide column; others stay on one line.
WRAP_AFTER = 60


def read_tsv(path: str | os.PathLike[str] | None) -> pd.DataFrame | None:
    """A results table as text and numbers, or None when the file is absent or not given.

    Columns whose every non-empty cell is a number become numeric; all others stay text (so a
    gene or sample called ``NA`` stays ``NA``).
    """
    if path is None or not Path(path).is_file():
        return None
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for column in table.columns:
        values = table[column]
        present = ~values.isin(_MISSING)
        if not present.any():
            table[column] = np.nan
            continue
        numbers = pd.to_numeric(values.where(present), errors="coerce")
        if numbers[present].notna().all():
            table[column] = numbers
    return table


def read_de_genes(path: str | None) -> pd.DataFrame | None:
    """Every DE table in one (de_all.tsv.gz), gene names as text."""
    if path is None or not Path(path).is_file():
        return None
    text = {c: str for c in ("cell_type", "gene", "method", "evidence", "covariates")}
    table = pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)
    for column in ("log2FC", "padj", "pvalue"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def significant(value: object, digits: int = 3) -> object:
    """A float rounded to `digits` significant digits (other values unchanged)."""
    if isinstance(value, float | np.floating) and math.isfinite(value) and value != 0:
        return float(f"{value:.{digits}g}")
    return value


def _cell(value: object) -> object:
    """One cell for the page: numbers stay numbers (sortable), text is escaped."""
    if isinstance(value, Markup):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return escape(str(value))
    if isinstance(value, int | np.integer | float | np.floating):
        return significant(float(value)) if isinstance(value, float | np.floating) else int(value)
    return escape(str(value))


def link(href: str, text: object) -> Markup:
    """An escaped ``<a href>`` (a same-page anchor or a relative path)."""
    return Markup('<a href="{}">{}</a>').format(href, text)


def page_table(
    table: pd.DataFrame,
    *,
    table_id: str,
    links: Mapping[str, Callable[[pd.Series], str | None]] | None = None,
    columns: Sequence[str] | None = None,
    paging: bool | None = None,
) -> Markup:
    """A sortable, searchable table (itables offline) with every cell escaped.

    Parameters
    ----------
    table
        The rows to show (not modified).
    table_id
        The HTML id of the table (unique on the page).
    links
        Column -> function of a row giving the href for that cell's text (None: no link).
    columns
        Columns to show, in order (default: all).
    paging
        Page the rows (default: when there are more than :data:`PAGE_LENGTH`).
    """
    from itables import to_html_datatable

    shown = table.loc[:, list(columns)] if columns is not None else table
    cells = shown.astype(object).apply(lambda column: column.map(_cell))
    for column, href_of in (links or {}).items():
        if column in cells:
            hrefs = table.apply(href_of, axis=1) if len(table) else []
            cells[column] = [
                link(h, c) if h else c for h, c in zip(hrefs, cells[column], strict=True)
            ]
    wrapped = [i for i, c in enumerate(shown.columns) if _longest(shown[c]) > WRAP_AFTER]
    cells.columns = [str(escape(str(c))) for c in cells.columns]
    pages = len(cells) > PAGE_LENGTH if paging is None else paging
    layout = {"topStart": "pageLength", "topEnd": "search", "bottomStart": "info",
              "bottomEnd": "paging"} if pages else {"topStart": None, "topEnd": None,
              "bottomStart": None, "bottomEnd": None}  # fmt: skip
    html = to_html_datatable(
        cells,
        table_id=table_id,
        connected=False,
        display_logo_when_loading=False,
        allow_html=True,
        format_floats_in_python=False,
        showIndex=False,
        # a click anywhere on a header sorts (itables' default sorts on the arrow only)
        text_in_header_can_be_selected=False,
        paging=pages,
        pageLength=PAGE_LENGTH,
        lengthMenu=[PAGE_LENGTH, 50, 200, 1000],
        layout=layout,
        classes="display compact cell-border nowrap",
        columnDefs=[{"targets": wrapped, "className": "wrap"}] if wrapped else [],
    )
    return Markup('<div class="table-wrap">{}</div>').format(Markup(html))


def _longest(column: pd.Series) -> int:
    """Length of the longest text in a column (0 for numbers)."""
    if column.dtype.kind in "biuf":
        return 0
    return int(column.astype(str).str.len().max()) if len(column) else 0


def offline_init() -> Markup:
    """The DataTables bundle itables inlines once per page (its offline mode)."""
    from itables import options
    from itables.javascript import generate_init_offline_itables_html

    return Markup(generate_init_offline_itables_html(options.dt_bundle))
