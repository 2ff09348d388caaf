"""Read one sample's raw counts from any public format into the AnnData the workflow trusts.

The readers live in :mod:`cordatlas.io.readers` (10x, h5ad, loom) and
:mod:`cordatlas.io.delimited` (text tables); this module detects the format, keeps one
species of a mixed-species file, selects a pooled file's barcodes and assembles the output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.config import METADATA_COLUMNS, sample_metadata
from cordatlas.io.delimited import read_delimited
from cordatlas.io.formats import FORMATS, ORIENTATIONS
from cordatlas.io.readers import (
    _MTX_NAMES,
    _clean_label,
    _examples,
    _fail,
    check_raw_counts,
    read_10x_h5,
    read_10x_mtx,
    read_h5ad_counts,
    read_loom_counts,
)
from cordatlas.params import IngestParams

__all__ = ["detect_format", "filter_barcodes", "ingest_sample", "split_species"]

log = logging.getLogger(__name__)

#: Species prefixes recognised in mixed-species (barnyard) gene names.
KNOWN_SPECIES = ("human", "mouse")
#: Share of genes that must carry a species prefix for a file to count as mixed-species.
SPECIES_PREFIX_MIN_FRACTION = 0.5


def detect_format(path: Path | str, *, sample: str) -> str:
    """The input format from the path: directory or .tar.gz/.tgz -> 10x_mtx, .h5 -> 10x_h5,
    .h5ad, .loom, .csv/.tsv/.txt (optionally .gz) -> delimited; otherwise UserInputError."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or name.endswith((".tar.gz", ".tgz", ".tar")) or name in _MTX_NAMES:
        return "10x_mtx"
    stem = name.removesuffix(".gz")
    if stem.endswith((".csv", ".tsv", ".txt", ".tab")):
        return "delimited"
    for suffix, fmt in ((".h5", "10x_h5"), (".h5ad", "h5ad"), (".loom", "loom")):
        if name.endswith(suffix):
            return fmt
    raise _fail(
        sample,
        f"cannot detect the format of {path} from its name; set `format` in the sample sheet "
        f"to one of {', '.join(f for f in FORMATS if f != 'auto')} (auto knows: a directory or "
        ".tar.gz -> 10x_mtx, .h5 -> 10x_h5, .h5ad, .loom, .csv/.tsv/.txt[.gz] -> delimited)",
    )


def split_species(
    adata: ad.AnnData, *, sample: str, species: str = "human", min_fraction: float = 0.9
) -> tuple[ad.AnnData, dict[str, Any]]:
    """Keep one species' cells and genes from a mixed-species (barnyard) matrix.

    A file is mixed-species when at least half its genes carry a species prefix
    (``HUMAN_``/``MOUSE_``, i.e. the species name upper-cased plus ``_``, as in GEO GSE100866).
    Then cells with at least `min_fraction` of their counts on `species` genes are kept, genes
    of other species (and unprefixed genes) are dropped and the prefix is stripped. Without
    prefixes the input is returned unchanged. Returns (adata, report for ``uns["ingest"]``).
    """
    species = species.strip().lower()
    prefixes = {s: f"{s.upper()}_" for s in dict.fromkeys((*KNOWN_SPECIES, species))}
    symbols = (
        adata.var["gene_symbol"].astype(str)
        if "gene_symbol" in adata.var
        else adata.var_names.astype(str)
    )
    names = pd.Series(symbols.to_numpy(), index=adata.var_names)
    per_prefix = {p: int(names.str.startswith(p).sum()) for p in prefixes.values()}
    report: dict[str, Any] = {"species": species, "mixed": False}
    if sum(per_prefix.values()) < SPECIES_PREFIX_MIN_FRACTION * max(adata.n_vars, 1):
        return adata, report
    prefix = prefixes[species]
    own = names.str.startswith(prefix).to_numpy()
    if not own.any():
        found = ", ".join(f"{p} ({n} genes)" for p, n in per_prefix.items() if n)
        raise _fail(
            sample,
            f"gene names carry species prefixes ({found}) but none is {prefix} for species "
            f"{species!r}; set `ingest.species` in the config to the species to keep",
        )
    # float64 so that a cell exactly at the cut (9 of 10 counts for 0.9) is kept
    totals = np.asarray(adata.X.sum(axis=1), dtype=np.float64).ravel()
    on_own = np.asarray(adata.X[:, own].sum(axis=1), dtype=np.float64).ravel()
    fraction = np.divide(on_own, totals, out=np.zeros_like(totals, dtype=float), where=totals > 0)
    keep_cells = fraction >= min_fraction
    out = adata[keep_cells, own].copy()
    strip = len(prefix)
    new_names = [n[strip:] if n.startswith(prefix) else n for n in out.var_names.astype(str)]
    out.var["gene_symbol"] = [
        s[strip:] if s.startswith(prefix) else s for s in out.var["gene_symbol"].astype(str)
    ]
    if "gene_ids" in out.var:
        out.var["gene_ids"] = [
            s[strip:] if s.startswith(prefix) else s for s in out.var["gene_ids"].astype(str)
        ]
    out.var_names = pd.Index(new_names, dtype=object)
    report.update(
        {
            "mixed": True,
            "prefix": prefix,
            "min_fraction": float(min_fraction),
            "genes_per_prefix": per_prefix,
            "n_cells_kept": int(keep_cells.sum()),
            "n_cells_dropped": int((~keep_cells).sum()),
            "n_genes_kept": int(own.sum()),
            "n_genes_dropped": int((~own).sum()),
        }
    )
    log.info(
        "sample %s: mixed-species file; kept %d of %d cells with >= %.2f of counts on %s genes",
        sample,
        report["n_cells_kept"],
        adata.n_obs,
        min_fraction,
        prefix,
    )
    return out, report


def filter_barcodes(adata: ad.AnnData, *, sample: str, pattern: str) -> ad.AnnData:
    """Keep cells whose barcode (obs_names as in the file) matches `pattern` (re.search)."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise _fail(sample, f"barcode_pattern {pattern!r} is not a valid regex ({exc})") from exc
    barcodes = adata.obs_names.astype(str)
    keep = np.fromiter((bool(regex.search(b)) for b in barcodes), dtype=bool, count=len(barcodes))
    if not keep.any():
        raise _fail(
            sample,
            f"barcode_pattern {pattern!r} matches none of the {len(barcodes)} barcodes (e.g. "
            f"{_examples(barcodes)}); fix `barcode_pattern` in the sample sheet",
        )
    return adata[keep].copy()


def _metadata_value(value: object) -> str:
    text = _clean_label(value)
    return text if text else "unknown"


def _read_any(
    path: Path, *, sample: str, fmt: str, orientation: str, genome: str | None
) -> ad.AnnData:
    if fmt == "10x_h5":
        if not path.is_file():
            raise _fail(sample, f"format 10x_h5 needs an .h5 file but {path} is not a file")
        return read_10x_h5(path, sample=sample, genome=genome)
    if fmt == "10x_mtx":
        return read_10x_mtx(path, sample=sample, genome=genome)
    if not path.is_file():
        raise _fail(sample, f"format {fmt} needs a file but {path} is a directory")
    if fmt == "h5ad":
        return read_h5ad_counts(path, sample=sample)
    if fmt == "loom":
        return read_loom_counts(path, sample=sample)
    return read_delimited(path, sample=sample, orientation=orientation)


def ingest_sample(path: Path | str, row: Mapping[str, Any], *, params: IngestParams) -> ad.AnnData:
    """Read one sample's raw counts into the AnnData every later rule trusts.

    Parameters
    ----------
    path
        File or folder with the counts (see ``format``).
    row
        The sample's row of the sample sheet (e.g. the workflow's ``sample_row``; absent, None
        and empty values count as not given):

        - ``sample``: the id; prefixes obs_names and names the sample in every error.
        - ``format``: one of `FORMATS`; "auto" (or not given) uses `detect_format`.
        - ``orientation``: delimited text only: "genes_x_cells", "cells_x_genes" or "auto"
          (`detect_orientation`, also when not given).
        - ``barcode_pattern``: regex; keep only cells whose barcode matches (re.search), for
          files pooling donors.
        - ``genome``: genome to read from a 10x file holding several.
        - the metadata columns (``config.METADATA_COLUMNS``: donor, condition, tissue, study,
          technology, sex, sorted_fraction) the row has, written as string obs columns;
          missing values become "unknown".
    params
        config ``ingest``: for mixed-species files (`split_species`), the ``species`` kept and
        the fraction of a cell's counts (``species_min_fraction``) that must fall on its genes.

    Returns
    -------
    Cells x genes AnnData: X CSR float32 of integer counts; obs_names ``"{sample}:{barcode}"``;
    obs ``barcode``, ``sample``, one column per metadata column, ``input_*`` (h5ad/loom);
    var_names unique symbols with ``gene_symbol`` and, when known, ``gene_ids``;
    ``uns["ingest"]`` a JSON-serialisable provenance record.

    Raises
    ------
    UserInputError
        Unknown format, unreadable file, input that is not raw counts, undecidable orientation,
        a barcode pattern matching nothing, or no cells left.
    """
    path = Path(path)
    sample = str(row["sample"])
    requested = _sheet_value(row, "format") or "auto"
    orientation = _sheet_value(row, "orientation") or "auto"
    _check_request(path, sample=sample, requested=requested, orientation=orientation, params=params)
    fmt = detect_format(path, sample=sample) if requested == "auto" else requested
    adata, provenance = _read_counts(
        path,
        sample=sample,
        fmt=fmt,
        format_requested=requested,
        orientation=orientation,
        genome=_sheet_value(row, "genome"),
    )
    adata = _select_cells(
        adata,
        sample=sample,
        barcode_pattern=_sheet_value(row, "barcode_pattern"),
        params=params,
        provenance=provenance,
    )
    out = _output_anndata(adata, sample=sample, metadata=_row_metadata(row), provenance=provenance)
    log.info(
        "sample %s: %d cells x %d genes from %s (%s)",
        sample,
        out.n_obs,
        out.n_vars,
        path,
        fmt,
    )
    return out


# ---- check --------------------------------------------------------------------------------
def _sheet_value(row: Mapping[str, Any], column: str) -> str | None:
    """A sample-sheet value as text, None when absent, None, NA or empty."""
    value = row.get(column)
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return None
    text = str(value)
    return text if text else None


def _check_request(
    path: Path, *, sample: str, requested: str, orientation: str, params: IngestParams
) -> None:
    """Refuse an unknown format or orientation, a species fraction outside [0, 1], no input."""
    if requested not in FORMATS:
        raise _fail(sample, f"format {requested!r} is not one of {', '.join(FORMATS)}")
    if orientation not in ORIENTATIONS:
        raise _fail(sample, f"orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")
    if not 0.0 <= params.species_min_fraction <= 1.0:
        raise _fail(
            sample,
            f"species_min_fraction {params.species_min_fraction} must lie between 0 and 1; fix "
            "`ingest.species_min_fraction` in the config",
        )
    if not path.exists():
        raise _fail(sample, f"input {path} does not exist; fix `path` in the sample sheet")


# ---- compute ------------------------------------------------------------------------------
def _read_counts(
    path: Path,
    *,
    sample: str,
    fmt: str,
    format_requested: str,
    orientation: str,
    genome: str | None,
) -> tuple[ad.AnnData, dict[str, Any]]:
    """Read, check for raw counts and round; returns (adata, provenance so far)."""
    adata = _read_any(path, sample=sample, fmt=fmt, orientation=orientation, genome=genome)
    provenance: dict[str, Any] = {"path": str(path), "format_requested": format_requested}
    provenance.update(adata.uns.pop("ingest"))
    provenance.setdefault("counts_source", "X")
    provenance.setdefault("orientation", "cells_x_genes (fixed by format)")
    if fmt != "h5ad" and fmt != "loom":
        check_raw_counts(adata.X, sample=sample, where=f"the counts of {path}")
    adata.X.data = np.rint(adata.X.data)
    adata.X.eliminate_zeros()  # values within the tolerance of 0 were rounded to 0
    provenance["n_cells_read"] = int(adata.n_obs)
    provenance["n_genes_read"] = int(adata.n_vars)
    return adata, provenance


def _select_cells(
    adata: ad.AnnData,
    *,
    sample: str,
    barcode_pattern: str | None,
    params: IngestParams,
    provenance: dict[str, Any],
) -> ad.AnnData:
    """Keep the pattern's barcodes and the species' cells and genes, recording both."""
    if barcode_pattern:
        adata = filter_barcodes(adata, sample=sample, pattern=barcode_pattern)
    provenance["barcode_pattern"] = barcode_pattern or ""
    provenance["n_cells_matching_pattern"] = int(adata.n_obs)
    adata, provenance["species"] = split_species(
        adata, sample=sample, species=params.species, min_fraction=params.species_min_fraction
    )
    if adata.n_obs == 0:
        raise _fail(
            sample,
            f"no cells left from {provenance['path']} (read {provenance['n_cells_read']}); "
            "check the file, `barcode_pattern` and `ingest.species`",
        )
    provenance["n_cells_kept"] = int(adata.n_obs)
    provenance["n_genes_kept"] = int(adata.n_vars)
    provenance["n_duplicate_symbols_renamed"] = int(
        (adata.var_names.astype(str) != adata.var["gene_symbol"].astype(str)).sum()
    )
    return adata


# ---- format -------------------------------------------------------------------------------
def _row_metadata(row: Mapping[str, Any]) -> dict[str, str]:
    """The row's metadata columns, as config.sample_metadata gives them (only those present)."""
    present = {column: row[column] for column in METADATA_COLUMNS if column in row}
    return {k: v for k, v in sample_metadata(present).items() if k in present}


def _output_anndata(
    adata: ad.AnnData, *, sample: str, metadata: Mapping[str, str], provenance: dict[str, Any]
) -> ad.AnnData:
    """obs_names ``{sample}:{barcode}``, obs barcode, sample and metadata, X CSR float32."""
    barcodes = adata.obs_names.astype(str)
    obs = pd.DataFrame(
        {"barcode": barcodes.to_numpy(dtype=object), "sample": sample},
        index=pd.Index([f"{sample}:{b}" for b in barcodes], dtype=object),
    )
    for key, value in metadata.items():
        obs[str(key)] = _metadata_value(value)
    for column in adata.obs.columns:
        obs[column] = adata.obs[column].to_numpy(dtype=object)
    X = adata.X if isinstance(adata.X, sp.csr_matrix) else sp.csr_matrix(adata.X)
    out = ad.AnnData(X=X.astype(np.float32), obs=obs, var=adata.var.copy())
    out.uns["ingest"] = provenance
    return out
