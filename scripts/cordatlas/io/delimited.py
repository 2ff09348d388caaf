"""Reader of delimited text counts (csv/tsv/txt, optionally gzipped), either orientation."""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.io.formats import ORIENTATIONS
from cordatlas.io.readers import (
    DAMAGED_FILE_ERRORS,
    _counts_anndata,
    _examples,
    _fail,
    _is_gzip,
    _open_text,
    check_file_format,
    damaged_file,
    harmonise_genes,
)

__all__ = [
    "check_orientation",
    "detect_orientation",
    "orientation_evidence",
    "read_delimited",
    "sniff_separator",
]


#: A cell barcode inside a label: a run of >= 6 A/C/G/T/N bounded by the label's ends or by
#: non-alphanumeric characters, so `AAACCTGAGCGT-1`, `MantonBM1_HiSeq_1-AAACCTGA-1` and
#: `CD8_off_GACCCCCCTTCT` match while gene symbols (`CACNA1A`, `GATA1`) do not.
BARCODE_RE = re.compile(r"(?:^|[^A-Za-z0-9])[ACGTN]{6,}(?=$|[^A-Za-z0-9])")
#: Share of an axis's labels that must look like barcodes for the axis to count as cells.
BARCODE_AXIS_MIN_FRACTION = 0.9
#: Mitochondrial gene symbols (human, mouse, and species-prefixed as in GEO GSE100866).
MITO_RE = re.compile(r"^(?:HUMAN_|MOUSE_)?(?:MT-|mt-|Mt-)")
#: Rows parsed per chunk of delimited text (bounds memory: chunk x columns x 4 bytes).
DELIMITED_CHUNK_ROWS = 2000


def _split_line(line: str, sep: str) -> list[str]:
    if sep == " ":
        return line.split()
    return next(csv.reader([line], delimiter=sep))


def sniff_separator(path: Path | str, *, sample: str) -> str:
    """The field separator of a delimited file: tab, comma, semicolon or whitespace.

    The candidate splitting the first data line into the most fields wins; the extension
    (.csv comma, .tsv/.tab tab) breaks ties and is overruled by the content when it disagrees.
    """
    path = Path(path)
    header, data_line = _first_lines(path, sample=sample)
    if not data_line.strip():
        raise _fail(
            sample,
            f"{path} has no data rows after its header line (a table needs a header of column "
            "labels, then one row per gene or cell)",
        )
    name = path.name.lower().removesuffix(".gz")
    preferred = {".csv": ",", ".tsv": "\t", ".tab": "\t"}.get(Path(name).suffix, "")
    counts = {sep: len(_split_line(data_line, sep)) for sep in ("\t", ",", ";", " ")}
    best = max(counts.values())
    if best < 2:
        raise _fail(
            sample,
            f"{path} does not look like a delimited table (its second line has no tab, comma, "
            "semicolon or space separating fields); use format 10x_h5, 10x_mtx, h5ad or loom",
        )
    if preferred and counts[preferred] == best:
        return preferred
    return next(sep for sep in ("\t", ",", ";", " ") if counts[sep] == best)


def _first_lines(path: Path, *, sample: str) -> tuple[str, str]:
    """The first two lines, without line ends; damaged or non-UTF-8 text refused."""
    try:
        with _open_text(path) as handle:
            return handle.readline().rstrip("\r\n"), handle.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise _not_utf8(path, sample=sample) from None
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_file(sample, path, exc) from None


def _binary_lines(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _not_utf8(path: Path, *, sample: str) -> UserInputError:
    """The message for text that is not UTF-8, naming the first line that is not."""
    where = ""
    with _binary_lines(path) as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                where = f" (line {number}, byte 0x{line[err.start]:02x})"
                break
    return _fail(
        sample,
        f"{path} is not UTF-8 text{where}; it looks saved as Latin-1 or Windows-1252: save it "
        "as UTF-8",
    )


def _gzip_damage(path: Path) -> BaseException | None:
    """The error a gzip file raises when read to its end (truncated, corrupt), or None."""
    if not _is_gzip(path):
        return None
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except DAMAGED_FILE_ERRORS as exc:
        return exc
    return None


def _barcode_fraction(labels: Sequence[str]) -> float:
    labels = list(labels)
    if not labels:
        return 0.0
    return sum(bool(BARCODE_RE.search(str(x))) for x in labels) / len(labels)


def orientation_evidence(
    row_labels: Sequence[str], column_labels: Sequence[str]
) -> tuple[str, str] | None:
    """The orientation the labels show and why (rules 1-2 of `detect_orientation`), or None."""
    rows_bc = _barcode_fraction(row_labels) >= BARCODE_AXIS_MIN_FRACTION
    cols_bc = _barcode_fraction(column_labels) >= BARCODE_AXIS_MIN_FRACTION
    if cols_bc and not rows_bc:
        return "genes_x_cells", "column labels look like cell barcodes"
    if rows_bc and not cols_bc:
        return "cells_x_genes", "row labels look like cell barcodes"
    rows_mt = any(MITO_RE.match(str(x)) for x in row_labels)
    cols_mt = any(MITO_RE.match(str(x)) for x in column_labels)
    if rows_mt and not cols_mt:
        return "genes_x_cells", "row labels include mitochondrial genes"
    if cols_mt and not rows_mt:
        return "cells_x_genes", "column labels include mitochondrial genes"
    return None


def check_orientation(
    orientation: str,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    sample: str,
    path: Path | str,
) -> None:
    """Refuse an orientation set in the sample sheet that the labels contradict.

    A table read the wrong way round makes every gene a "cell" (GEO's genes x cells csv read as
    cells x genes gives thousands of cells named after genes); rules 1-2 of `detect_orientation`
    tell which way it lies.
    """
    evidence = orientation_evidence(row_labels, column_labels)
    if evidence is None or evidence[0] == orientation:
        return
    cells, genes = (
        (column_labels, row_labels)
        if orientation == "genes_x_cells"
        else (row_labels, column_labels)
    )
    raise _fail(
        sample,
        f"`orientation` is {orientation} in the sample sheet, but the {evidence[1]} in {path}: "
        f"read that way its cells would be {_examples(cells)} and its genes {_examples(genes)}; "
        f"set `orientation` to {evidence[0]} (or auto)",
    )


def detect_orientation(
    row_labels: Sequence[str], column_labels: Sequence[str], *, sample: str, path: Path | str
) -> tuple[str, str]:
    """Which axis of a delimited table holds cells; returns (orientation, reason).

    Rules, in order:

    1. Barcodes: an axis whose labels are at least 90 % barcode-like (a run of >= 6 A/C/G/T/N
       bounded by the label's ends or by separators, so prefixes like ``CD8_off_`` or
       ``MantonBM1_HiSeq_1-`` and suffixes like ``-1`` are allowed; see `BARCODE_RE`) is the
       cell axis, provided the other axis is not.
    2. Mitochondrial genes: an axis with labels starting ``MT-``, ``mt-`` or ``HUMAN_MT-``/
       ``MOUSE_mt-`` is the gene axis, provided the other axis has none.
    3. Otherwise UserInputError asking for `orientation` in the sample sheet.
    """
    evidence = orientation_evidence(row_labels, column_labels)
    if evidence is not None:
        return evidence
    raise _fail(
        sample,
        f"cannot tell which axis of {path} holds the cells: neither the row labels (e.g. "
        f"{_examples(row_labels)}) nor the column labels (e.g. {_examples(column_labels)}) look "
        "like cell barcodes (runs of >= 6 A/C/G/T/N) on one axis only, and mitochondrial genes "
        "(MT-/mt-) are not on one axis only; set `orientation` to genes_x_cells or "
        "cells_x_genes in the sample sheet",
    )


def read_delimited(
    path: Path | str, *, sample: str, orientation: str = "auto", sep: str | None = None
) -> ad.AnnData:
    """Read a csv/tsv/txt table (optionally gzipped) of counts; first column = row labels.

    The header holds the column labels, with or without a corner cell. Values are parsed as
    float32 in chunks of rows and stored sparse, so a 12,000 x 2,000 table needs about one chunk
    of dense memory. `orientation` "auto" applies `detect_orientation`; an orientation set in
    the sample sheet is checked against the labels (`check_orientation`).

    Returns
    -------
    Cells x genes AnnData; ``uns["ingest"]`` with ``format``, ``separator``, ``orientation`` and
    ``orientation_rule``.

    Raises
    ------
    UserInputError
        A file that is not text, truncated or corrupt, not UTF-8, ragged, non-numeric, or whose
        orientation is undecidable or contradicts the one set.
    """
    path = Path(path)
    if orientation not in ORIENTATIONS:
        raise _fail(sample, f"orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")
    check_file_format(path, declared="delimited", sample=sample)
    sep = sep or sniff_separator(path, sample=sample)
    column_labels, n_fields = _column_labels(path, sep=sep, sample=sample)
    row_labels, table = _read_values(path, sep=sep, n_fields=n_fields, sample=sample)
    if orientation == "auto":
        orientation, rule = detect_orientation(row_labels, column_labels, sample=sample, path=path)
    else:
        check_orientation(orientation, row_labels, column_labels, sample=sample, path=path)
        rule = "set in the sample sheet"
    if orientation == "genes_x_cells":
        matrix, barcodes, genes = table.T.tocsr(), column_labels, row_labels
    else:
        matrix, barcodes, genes = table, row_labels, column_labels
    provenance = {
        "format": "delimited",
        "separator": {"\t": "tab", ",": "comma", ";": "semicolon", " ": "whitespace"}[sep],
        "orientation": orientation,
        "orientation_rule": rule,
    }
    return _counts_anndata(
        matrix,
        barcodes=barcodes,
        var=harmonise_genes(genes),
        sample=sample,
        path=path,
        provenance=provenance,
    )


def _column_labels(path: Path, *, sep: str, sample: str) -> tuple[list[str], int]:
    """The header's column labels (with or without a corner cell) and the fields per row."""
    header_line, first_line = _first_lines(path, sample=sample)
    header, first_row = _split_line(header_line, sep), _split_line(first_line, sep)
    n_fields = len(first_row)
    if len(header) == n_fields:
        return header[1:], n_fields
    if len(header) == n_fields - 1:
        return header, n_fields
    raise _fail(
        sample,
        f"{path}: the header has {len(header)} fields but the first row has {n_fields}; "
        "the first row must hold the column labels and each later row a label then values",
    )


def _read_values(
    path: Path, *, sep: str, n_fields: int, sample: str
) -> tuple[list[str], sp.csr_matrix]:
    """Row labels and values (CSR float32) of the rows after the header, read in chunks."""
    n_values = n_fields - 1
    dtypes: dict[int, Any] = {0: str, **{i: np.float32 for i in range(1, n_fields)}}
    blocks: list[sp.csr_matrix] = []
    row_labels: list[str] = []
    try:
        reader = pd.read_csv(
            path,
            sep=r"\s+" if sep == " " else sep,
            header=None,
            skiprows=1,
            index_col=0,
            dtype=dtypes,
            chunksize=DELIMITED_CHUNK_ROWS,
            compression="gzip" if _is_gzip(path) else None,
            keep_default_na=False,
            # missing values count only in value columns: a gene may be called "NA"
            na_values={i: ["", "NA", "NaN", "nan"] for i in range(1, n_fields)},
        )
        with reader:
            for chunk in reader:
                if chunk.shape[1] != n_values:
                    raise ValueError(f"expected {n_values} values per row, got {chunk.shape[1]}")
                row_labels.extend(chunk.index.astype(str))
                blocks.append(sp.csr_matrix(chunk.to_numpy(dtype=np.float32, na_value=np.nan)))
    except UnicodeDecodeError:
        raise _not_utf8(path, sample=sample) from None
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_file(sample, path, exc) from None
    except (ValueError, pd.errors.ParserError) as exc:
        damage = _gzip_damage(path)  # garbage from a corrupt stream fails to parse first
        if damage is not None:
            raise damaged_file(sample, path, damage) from None
        reason = " ".join(str(exc).split())  # pandas' messages may span lines
        raise _fail(
            sample, f"{path} is not a numeric table with one label column ({reason})"
        ) from exc
    if not blocks:
        raise _fail(sample, f"{path} has a header but no data rows")
    return row_labels, sp.vstack(blocks, format="csr")
