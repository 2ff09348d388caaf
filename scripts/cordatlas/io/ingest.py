"""Read one sample's raw counts from any public format into the AnnData the workflow trusts.

The readers live in :mod:`cordatlas.io.readers` (10x, h5ad, loom) and
:mod:`cordatlas.io.delimited` (text tables); this module detects the format, keeps one
species of a mixed-species file, selects a pooled file's barcodes and assembles the output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
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

__all__ = [
    "IngestResult",
    "call_species",
    "detect_format",
    "filter_barcodes",
    "ingest_sample",
    "read_sample",
    "species_cuts",
    "split_species",
]

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


#: Columns of the per-cell species table (`split_species`), after one ``counts_<species>`` each.
SPECIES_COLUMNS = ("total_counts", "species", "minority_share", "multiplet", "kept")


@dataclass(frozen=True)
class SpeciesCut:
    """The multiplet cut on the minority-species share of one majority species' cells."""

    species: str
    n_cells: int
    median: float | None
    cut: float
    source: str


def split_species(
    adata: ad.AnnData,
    *,
    sample: str,
    species: str = "human",
    nmads: float = 3.0,
    min_share: float = 0.1,
    min_cells: int = 20,
) -> tuple[ad.AnnData, dict[str, Any], pd.DataFrame]:
    """Keep one species' single cells and genes from a mixed-species (barnyard) matrix.

    A file is mixed-species when at least half its genes carry a species prefix
    (``HUMAN_``/``MOUSE_``, i.e. the species name upper-cased plus ``_``, as in GEO GSE100866).
    Then each cell's species is its majority species (`call_species`), and a cell whose
    minority-species share is an outlier above the shares of its majority species' cells is a
    cross-species multiplet (`species_cuts`). Single cells of `species` are kept, genes of other
    species (and unprefixed genes) are dropped and the prefix is stripped. Without prefixes the
    input is returned unchanged.

    Returns
    -------
    (adata, report for ``uns["ingest"]["species"]``, per-cell table of every cell read:
    ``counts_<species>`` per species, `SPECIES_COLUMNS`; empty for a single-species file).
    """
    species = species.strip().lower()
    prefixes = {s: f"{s.upper()}_" for s in dict.fromkeys((*KNOWN_SPECIES, species))}
    names = _gene_symbols(adata)
    per_prefix = {p: int(names.str.startswith(p).sum()) for p in prefixes.values()}
    report: dict[str, Any] = {"species": species, "mixed": False}
    if sum(per_prefix.values()) < SPECIES_PREFIX_MIN_FRACTION * max(adata.n_vars, 1):
        return adata, report, pd.DataFrame(columns=list(SPECIES_COLUMNS))
    prefix = prefixes[species]
    own = names.str.startswith(prefix).to_numpy()
    if not own.any():
        found = ", ".join(f"{p} ({n} genes)" for p, n in per_prefix.items() if n)
        raise _fail(
            sample,
            f"gene names carry species prefixes ({found}) but none is {prefix} for species "
            f"{species!r}; set `ingest.species` in the config to the species to keep",
        )
    present = {s: p for s, p in prefixes.items() if per_prefix[p]}
    calls = call_species(_species_counts(adata, names, present))
    cuts = species_cuts(calls, nmads=nmads, min_share=min_share, min_cells=min_cells)
    calls["multiplet"] = calls["minority_share"] > calls["species"].map(
        {c.species: c.cut for c in cuts}
    ).fillna(np.inf)
    calls["kept"] = (calls["species"] == species) & ~calls["multiplet"]
    keep_cells = calls["kept"].to_numpy()
    out = _strip_prefix(adata[keep_cells, own].copy(), prefix)
    report.update(_species_report(calls, cuts, prefix=prefix, per_prefix=per_prefix, own=own))
    report.update({"nmads": float(nmads), "min_share": float(min_share), "min_cells": min_cells})
    _log_species(report, sample=sample, n_read=adata.n_obs)
    return out, report, calls


def call_species(counts: pd.DataFrame) -> pd.DataFrame:
    """Majority species and minority share of each cell, from its counts per species.

    `counts` has one ``counts_<species>`` column per species. The majority species has the
    most counts (ties go to the first column); the minority share is the fraction of the
    cell's counts on all other species. Cells without counts get species "none", share 0.
    """
    values = counts.to_numpy(dtype=np.float64)
    names = np.array([c.removeprefix("counts_") for c in counts.columns], dtype=object)
    total = values.sum(axis=1)
    top = values.max(axis=1) if values.shape[1] else np.zeros(len(values))
    calls = counts.copy()
    calls["total_counts"] = total
    calls["species"] = np.where(total > 0, names[values.argmax(axis=1)], "none")
    calls["minority_share"] = np.divide(
        total - top, total, out=np.zeros_like(total), where=total > 0
    )
    return calls


def species_cuts(
    calls: pd.DataFrame, *, nmads: float, min_share: float, min_cells: int
) -> list[SpeciesCut]:
    """Per majority species, the cut above which a minority share marks a multiplet.

    max(median + `nmads` MADs of the shares of that species' cells, `min_share`), the MAD
    scaled as R's mad() (:func:`cordatlas.qc.metrics.mad_bounds`); a species with fewer than
    `min_cells` cells takes the bound of all cells pooled. Robust to the multiplets themselves
    while they are a minority of a species' cells.
    """
    from cordatlas.qc.metrics import mad_bounds

    called = calls[calls["species"] != "none"]
    pooled = _share_bound(called["minority_share"], nmads=nmads, mad_bounds=mad_bounds)
    cuts = []
    for name, shares in called.groupby("species", sort=True)["minority_share"]:
        own_cut = len(shares) >= min_cells
        median, bound = (
            _share_bound(shares, nmads=nmads, mad_bounds=mad_bounds) if own_cut else pooled
        )
        where = f"{len(shares)} {name} cells" if own_cut else f"all {len(called)} cells pooled"
        if bound is None or bound <= min_share:
            cut, source = float(min_share), f"floor {min_share:g} (median + {nmads:g} MAD of "
            source += f"{where} is {'undefined' if bound is None else f'{bound:.3g}'})"
        else:
            cut, source = float(bound), f"median + {nmads:g} MAD of the share in {where}"
        cuts.append(SpeciesCut(str(name), int(len(shares)), median, cut, source))
    return cuts


def _share_bound(
    shares: pd.Series, *, nmads: float, mad_bounds: Any
) -> tuple[float | None, float | None]:
    """(median, median + nmads MAD) of minority shares; the bound is None when the MAD is 0."""
    if shares.empty:
        return None, None
    _, upper = mad_bounds(shares.to_numpy(), nmads=nmads, lower=False)
    return float(np.median(shares)), upper


def _gene_symbols(adata: ad.AnnData) -> pd.Series:
    symbols = (
        adata.var["gene_symbol"].astype(str)
        if "gene_symbol" in adata.var
        else adata.var_names.astype(str)
    )
    return pd.Series(symbols.to_numpy(), index=adata.var_names)


def _species_counts(
    adata: ad.AnnData, names: pd.Series, prefixes: Mapping[str, str]
) -> pd.DataFrame:
    """Cells x species: each cell's counts on each species' prefixed genes."""
    columns = {}
    for name, prefix in prefixes.items():
        genes = names.str.startswith(prefix).to_numpy()
        columns[f"counts_{name}"] = np.asarray(
            adata.X[:, genes].sum(axis=1), dtype=np.float64
        ).ravel()
    return pd.DataFrame(columns, index=pd.Index(adata.obs_names.astype(str), name="barcode"))


def _strip_prefix(out: ad.AnnData, prefix: str) -> ad.AnnData:
    strip = len(prefix)
    new_names = [n[strip:] if n.startswith(prefix) else n for n in out.var_names.astype(str)]
    for column in ("gene_symbol", "gene_ids"):
        if column in out.var:
            out.var[column] = [
                s[strip:] if s.startswith(prefix) else s for s in out.var[column].astype(str)
            ]
    if "gene_symbol" not in out.var:
        out.var["gene_symbol"] = new_names
    out.var_names = pd.Index(new_names, dtype=object)
    return out


def _species_report(
    calls: pd.DataFrame,
    cuts: list[SpeciesCut],
    *,
    prefix: str,
    per_prefix: Mapping[str, int],
    own: np.ndarray,
) -> dict[str, Any]:
    """The JSON-serialisable record of a mixed-species file: cells, multiplets and cuts."""
    by_species = calls.groupby("species")
    return {
        "mixed": True,
        "prefix": prefix,
        "genes_per_prefix": dict(per_prefix),
        "cells_per_species": {str(k): int(v) for k, v in by_species.size().items()},
        "multiplets_per_species": {
            str(k): int(v) for k, v in by_species["multiplet"].sum().items()
        },
        "multiplet_cut": {c.species: c.cut for c in cuts},
        "multiplet_cut_source": {c.species: c.source for c in cuts},
        "median_minority_share": {c.species: c.median for c in cuts},
        "n_multiplets": int(calls["multiplet"].sum()),
        "n_cells_kept": int(calls["kept"].sum()),
        "n_cells_dropped": int((~calls["kept"]).sum()),
        "n_genes_kept": int(own.sum()),
        "n_genes_dropped": int((~own).sum()),
    }


def _log_species(report: Mapping[str, Any], *, sample: str, n_read: int) -> None:
    per_species = ", ".join(
        f"{name} {n} (multiplets {report['multiplets_per_species'].get(name, 0)}, cut "
        f"{report['multiplet_cut'].get(name, float('nan')):.3f})"
        for name, n in report["cells_per_species"].items()
    )
    log.info(
        "sample %s: mixed-species file; majority species of %d cells: %s; kept %d single %s cells",
        sample,
        n_read,
        per_species,
        report["n_cells_kept"],
        report["species"],
    )


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


@dataclass(frozen=True)
class IngestResult:
    """One sample read: the AnnData later rules trust, and the species call of every cell read."""

    adata: ad.AnnData
    species: pd.DataFrame  # `split_species`'s per-cell table; empty for a single-species file


def ingest_sample(path: Path | str, row: Mapping[str, Any], *, params: IngestParams) -> ad.AnnData:
    """Read one sample's raw counts into the AnnData every later rule trusts.

    :func:`read_sample` without the per-cell species table.
    """
    return read_sample(path, row, params=params).adata


def read_sample(path: Path | str, row: Mapping[str, Any], *, params: IngestParams) -> IngestResult:
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
        how cross-species multiplets are called (``species_multiplet_nmads``,
        ``species_multiplet_min_share``, ``species_multiplet_min_cells``).

    Returns
    -------
    `IngestResult`: ``species``, the per-cell species table (`split_species`), and ``adata``:
    cells x genes AnnData: X CSR float32 of integer counts; obs_names ``"{sample}:{barcode}"``;
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
    adata, species = _select_cells(
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
    species.insert(0, "sample", sample)
    return IngestResult(adata=out, species=species)


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
    """Refuse an unknown format or orientation, species settings out of range, no input."""
    if requested not in FORMATS:
        raise _fail(sample, f"format {requested!r} is not one of {', '.join(FORMATS)}")
    if orientation not in ORIENTATIONS:
        raise _fail(sample, f"orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")
    if not 0.0 <= params.species_multiplet_min_share <= 0.5:
        raise _fail(
            sample,
            f"species_multiplet_min_share {params.species_multiplet_min_share} must lie between "
            "0 and 0.5 (a minority share never exceeds 0.5); fix "
            "`ingest.species_multiplet_min_share` in the config",
        )
    if not params.species_multiplet_nmads > 0:
        raise _fail(
            sample,
            f"species_multiplet_nmads {params.species_multiplet_nmads} must be positive; fix "
            "`ingest.species_multiplet_nmads` in the config",
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
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Keep the pattern's barcodes and the species' single cells and genes, recording both."""
    if barcode_pattern:
        adata = filter_barcodes(adata, sample=sample, pattern=barcode_pattern)
    provenance["barcode_pattern"] = barcode_pattern or ""
    provenance["n_cells_matching_pattern"] = int(adata.n_obs)
    adata, provenance["species"], species = split_species(
        adata,
        sample=sample,
        species=params.species,
        nmads=params.species_multiplet_nmads,
        min_share=params.species_multiplet_min_share,
        min_cells=params.species_multiplet_min_cells,
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
    return adata, species


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
