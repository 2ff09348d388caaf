"""A fetal-to-adult developmental axis per donor and cell type, defined by an external reference only.

The axis is the line from a reference's adult to its fetal mean profile over the ontogeny genes
of the library (fetal programme in progenitors, globin genes in erythroid cells); each donor's
cells are projected on it (0 adult reference, 1 fetal reference), with a 95 % interval, and the
cord-vs-adult difference of donor projections is tested with donors as the unit. Without an
external reference the axis is reported as not estimable: one oriented by the literature's
expected direction and centred on this study's adult donors would only restate the signature
tests (the same set scores, the same expectation) in units set by the adult donors' spread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from cordatlas.atlas.genes import measured_in_all
from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.donor_stats import PRESPECIFIED, bh_adjust, replicate_table, welch_t
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import expectation_for, library_sets
from cordatlas.genesets.scoring import symbol_index
from cordatlas.params import ComparisonParams, Contrast
from cordatlas.vocabulary import DONOR_LEVEL, EVIDENCE, NOT_TESTABLE, NOTE, check_evidence

log = logging.getLogger(__name__)

#: Library category whose sets define the axis.
ONTOGENY = "ontogeny"
#: Columns of the per-donor axis table (:func:`project_development_axis`).
AXIS_COLUMNS = [
    "cell_type",
    "replicate",
    "condition",
    "n_cells",
    "axis_score",
    "ci_low",
    "ci_high",
    "method",
    "n_sets",
    "n_genes",
    "features",
    "scale",
    NOTE,
]
#: Columns of the per-cell-type contrast table (:func:`development_contrast`).
CONTRAST_COLUMNS = [
    "cell_type",
    "n_condition",
    "n_reference",
    "mean_condition",
    "mean_reference",
    "difference",
    "ci_low",
    "ci_high",
    "se",
    "df",
    "pvalue",
    "padj",
    "family",
    "method",
    EVIDENCE,
    NOTE,
]
#: Columns of a development reference table.
REFERENCE_COLUMNS = ("gene", "cell_type", "fetal", "adult")
#: Columns of :func:`replicate_gene_means`' result.
GENE_MEAN_COLUMNS = ["cell_type", "replicate", "condition", "gene", "n_cells", "mean_expression"]
#: ``method`` of a donor projection and of the contrast.
PROJECTION = "reference_projection"
CONTRAST_METHOD = "welch_t_on_donor_projections"
#: ``method`` and ``scale`` of a cell type whose axis could not be placed (the reason code).
NOT_ESTIMABLE = "not_estimable"
#: Confidence level of every interval of this module.
LEVEL = 0.95

#: Default minimum fetal-adult distance of a reference in a cell type (Euclidean norm of
#: fetal - adult mean log-normalised expression over the genes used). Below it the reference
#: does not separate the two ends and the projection would mostly rescale donor noise: in the
#: simulator, cell types without a planted ontogeny effect have distances of 0.02-0.19 while
#: progenitors and erythroid cells have 1-3.
DEFAULT_MIN_REFERENCE_DISTANCE = 0.2
#: Reasons a cell type gets no axis (``scale`` code: ``note`` prose).
NO_REFERENCE = "no_external_reference"
NO_REFERENCE_NOTE = (
    "not estimable without an external reference: set signatures.development_reference to a "
    "fetal/adult reference table; an axis oriented by the literature and centred on this "
    "study's adult donors would restate the signature tests (signature_tests.tsv)"
)


def ontogeny_orientation(
    library: Mapping[str, Any], cell_type: str | None = None
) -> dict[str, int]:
    """Ontogeny sets with an up/down expectation (in `cell_type`), oriented +1 (up) or -1 (down).

    Sets expected up in neonatal (cord) cells point toward fetal (+1); sets expected down point
    away from it (-1). Sets with a conflicting or no expectation, or whose ``cell_types``
    exclude `cell_type`, are left out.
    """
    oriented = {}
    for name, entry in library_sets(library).items():
        if entry["category"] != ONTOGENY:
            continue
        direction = (
            entry["expected_direction"] if cell_type is None else expectation_for(entry, cell_type)
        )
        if direction == "up":
            oriented[name] = 1
        elif direction == "down":
            oriented[name] = -1
    return oriented


# ============================================================================================
# With a user-supplied fetal/adult reference
# ============================================================================================
def read_development_reference(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a fetal/adult reference table for `project_development_axis`.

    Parameters
    ----------
    path
        Tab-separated file with a header and columns ``gene``, ``cell_type``, ``fetal``,
        ``adult``: mean log-normalised expression of the gene in fetal and in adult cells of the
        cell type (cell types named as in the marker panel), normalised the same way as the
        atlas (shifted log of counts scaled to the median total). Other columns are ignored.

    Returns
    -------
    pd.DataFrame
        The four columns; gene and cell_type as str, fetal and adult as float.

    Raises
    ------
    UserInputError
        The file is missing or unreadable, a column is missing, a value is empty, not a number
        or negative, or a gene appears twice for a cell type (the message names the row).
    """
    source = Path(path)
    where = f"development reference {str(source)!r}"
    if not source.is_file():
        raise UserInputError(
            f"{where} not found; set signatures.development_reference to an existing TSV with "
            f"columns {list(REFERENCE_COLUMNS)}, or to null (the axis is then reported as not "
            "estimable)"
        )
    try:
        table = pd.read_csv(source, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise UserInputError(f"{where} could not be read as a TSV file: {err}") from None
    table.columns = [str(c).strip() for c in table.columns]
    require_columns(
        table.columns,
        REFERENCE_COLUMNS,
        table=where,
        fix=f"found {list(table.columns)}; the header must name {list(REFERENCE_COLUMNS)} and "
        "the file must be tab-separated",
    )
    extra = [c for c in table.columns if c not in REFERENCE_COLUMNS]
    if extra:
        log.info("%s: ignoring column(s) %s", where, extra)
    if table.empty:
        raise UserInputError(
            f"{where} has a header but no rows; add one row per gene and cell type"
        )
    table = table[list(REFERENCE_COLUMNS)].copy()
    for column in ("gene", "cell_type"):
        table[column] = table[column].str.strip()
        empty = table.index[table[column] == ""]
        if len(empty):
            raise UserInputError(
                f"{where}, row {int(empty[0]) + 2} (counting the header as row 1): {column!r} is "
                "empty; fill it in or delete the row"
            )
    for column in ("fetal", "adult"):
        values = pd.to_numeric(table[column].str.strip(), errors="coerce")
        bad = values.index[values.isna() | ~np.isfinite(values)]
        if len(bad):
            row = int(bad[0])
            raise UserInputError(
                f"{where}, row {row + 2} (gene {table.at[row, 'gene']!r}, cell type "
                f"{table.at[row, 'cell_type']!r}): {column!r} is {table.at[row, column]!r}, not a "
                "number; give the mean log-normalised expression"
            )
        negative = values.index[values < 0]
        if len(negative):
            row = int(negative[0])
            raise UserInputError(
                f"{where}, row {row + 2} (gene {table.at[row, 'gene']!r}): {column!r} is "
                f"{values[row]}; log-normalised expression cannot be negative (scaled or "
                "centred values are not accepted)"
            )
        table[column] = values.astype(np.float64)
    duplicated = table.duplicated(["gene", "cell_type"], keep="first")
    if duplicated.any():
        row = int(table.index[duplicated][0])
        raise UserInputError(
            f"{where}, row {row + 2}: gene {table.at[row, 'gene']!r} appears twice for cell type "
            f"{table.at[row, 'cell_type']!r}; keep one row per gene and cell type"
        )
    return table.reset_index(drop=True)


def replicate_gene_means(
    adata: ad.AnnData,
    genes: Sequence[str],
    comparison: ComparisonParams,
    *,
    condition_key: str = "condition",
    gene_symbols: str | None = None,
) -> pd.DataFrame:
    """Mean log-normalised expression of `genes` per replicate and cell type.

    `comparison` (config ``comparison``) gives the cell-type and replicate keys, the cells a
    replicate x cell type needs (``min_cells_per_replicate``) and the labels left out
    (``exclude_cell_types``).

    Returns
    -------
    pd.DataFrame
        :data:`GENE_MEAN_COLUMNS`, long; only replicate x cell type with at least
        ``min_cells_per_replicate`` cells and genes present in the data.
    """
    cell_type_key, replicate_key = comparison.cell_type_key, comparison.replicate_key
    min_cells, exclude = comparison.min_cells_per_replicate, comparison.exclude_cell_types
    require_columns(
        adata.obs.columns,
        [cell_type_key, replicate_key, condition_key],
        table="obs",
        fix=f"available: {sorted(map(str, adata.obs.columns))}",
    )
    symbols = symbol_index(adata, gene_symbols)
    position = {g: i for i, g in enumerate(symbols)}
    present = [g for g in dict.fromkeys(genes) if g in position]
    if not present or adata.n_obs == 0:
        return pd.DataFrame(columns=GENE_MEAN_COLUMNS)
    design = replicate_table(adata.obs, replicate_key=replicate_key, condition_key=condition_key)
    cell_type = adata.obs[cell_type_key].astype(str).to_numpy()
    replicate = adata.obs[replicate_key].astype(str).to_numpy()
    keep = ~np.isin(cell_type, list(map(str, exclude)))
    groups = pd.Series(list(zip(cell_type, replicate, strict=True)))[keep]
    codes, uniques = pd.factorize(groups, sort=False)
    rows_kept = np.flatnonzero(keep)
    indicator = sp.csr_matrix(
        (np.ones(rows_kept.size), (codes, rows_kept)), shape=(len(uniques), adata.n_obs)
    )
    sizes = np.asarray(indicator.sum(axis=1)).ravel()
    block = adata.X[:, [position[g] for g in present]]
    sums = indicator @ block
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    means = sums / sizes[:, None]
    records = []
    for k, (ct, rep) in enumerate(uniques):
        if sizes[k] < min_cells:
            continue
        for j, gene in enumerate(present):
            records.append(
                {
                    "cell_type": ct,
                    "replicate": rep,
                    "condition": str(design.at[rep, condition_key]),
                    "gene": gene,
                    "n_cells": int(sizes[k]),
                    "mean_expression": float(means[k, j]),
                }
            )
    return pd.DataFrame(records, columns=GENE_MEAN_COLUMNS)


def ontogeny_genes(library: Mapping[str, Any]) -> list[str]:
    """Genes of the library's ontogeny sets that carry an up/down expectation."""
    sets = library_sets(library)
    genes: list[str] = []
    for name in ontogeny_orientation(library):
        genes.extend(sets[name]["genes"])
    return list(dict.fromkeys(genes))


def ontogeny_cell_types(
    obs: pd.DataFrame, library: Mapping[str, Any], comparison: ComparisonParams
) -> list[str]:
    """Cell types of `obs` (labels not excluded) with at least one oriented ontogeny set.

    These are the cell types the axis concerns: each gets a row in both tables, with values
    or with the reason why there are none.
    """
    labels = obs[comparison.cell_type_key]
    if isinstance(labels.dtype, pd.CategoricalDtype):
        seen = set(labels.astype(str))
        order = [str(c) for c in labels.cat.categories if str(c) in seen]
    else:
        order = sorted(set(labels.astype(str)))
    excluded = set(map(str, comparison.exclude_cell_types))
    return [t for t in order if t not in excluded and ontogeny_orientation(library, t)]


def _not_estimable_row(cell_type: str, reason: str, note: str, n_sets: int) -> dict[str, Any]:
    return {
        "cell_type": cell_type,
        "replicate": "",
        "condition": "",
        "n_cells": 0,
        "axis_score": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "method": NOT_ESTIMABLE,
        "n_sets": n_sets,
        "n_genes": 0,
        "features": "",
        "scale": reason,
        NOTE: note,
    }


def axis_without_reference(cell_types: Sequence[str], library: Mapping[str, Any]) -> pd.DataFrame:
    """One not-estimable row per cell type (:data:`AXIS_COLUMNS`): no external reference given."""
    rows = [
        _not_estimable_row(
            t, NO_REFERENCE, NO_REFERENCE_NOTE, len(ontogeny_orientation(library, t))
        )
        for t in cell_types
    ]
    return pd.DataFrame(rows, columns=AXIS_COLUMNS)


def project_development_axis(
    adata: ad.AnnData,
    reference: pd.DataFrame,
    library: Mapping[str, Any],
    comparison: ComparisonParams,
    *,
    condition_key: str = "condition",
    gene_symbols: str | None = None,
    min_genes: int = 2,
    min_distance: float = DEFAULT_MIN_REFERENCE_DISTANCE,
) -> pd.DataFrame:
    """Each donor's cells on the adult -> fetal line of a reference, per cell type, with a 95 % CI.

    The axis is defined by the reference alone: with the reference's adult a_g and fetal f_g
    mean log-normalised expression for the cell type, each cell's expression x_g is projected
    on the line from adult to fetal,

        p = sum_g (x_g - a_g)(f_g - a_g) / sum_g (f_g - a_g)^2,

    so 0 is the adult reference, 1 the fetal one; cord blood is expected in between (Bunis et
    al. 2021, Cell Rep 34:108573). A donor's ``axis_score`` is the mean of its cells'
    projections (= the projection of its mean profile, the map being linear) and its interval
    is analytical: mean +- t(0.975, n - 1) x sd / sqrt(n) over the donor's cells. It measures
    the uncertainty from sampling the donor's cells only, not that of the reference. The scale
    is only meaningful when the reference was normalised like the atlas.

    Genes used per cell type: those of the ontogeny sets whose claim applies to it (fetal
    programme in progenitors, globin genes in erythroid cells), present in the reference with
    f_g != a_g and measured in every sample. Every cell type of :func:`ontogeny_cell_types`
    gets rows: one per donor with at least ``comparison.min_cells_per_replicate`` cells, or one
    not-estimable row (``method`` = ``not_estimable``, ``scale`` the reason code, ``note`` the
    reason) when fewer than `min_genes` genes qualify (``too_few_reference_genes``), the
    reference's fetal-adult distance over them is below `min_distance`
    (``reference_does_not_separate``), or no donor has enough cells (``too_few_cells``).

    Returns
    -------
    pd.DataFrame
        :data:`AXIS_COLUMNS`; ``method`` = ``reference_projection``, ``features`` = the genes
        used, ``scale`` = ``fetal_minus_adult``.
    """
    require_columns(
        adata.obs.columns,
        [comparison.cell_type_key, comparison.replicate_key, condition_key],
        table="obs",
        fix=f"available: {sorted(map(str, adata.obs.columns))}",
    )
    design = replicate_table(
        adata.obs, replicate_key=comparison.replicate_key, condition_key=condition_key
    )
    symbols = symbol_index(adata, gene_symbols)
    measured = measured_in_all(adata)
    position = {g: i for i, g in enumerate(symbols) if measured[i]}
    sets = library_sets(library)
    ref = reference[reference["fetal"] != reference["adult"]]
    cell_type = adata.obs[comparison.cell_type_key].astype(str).to_numpy()
    replicate = adata.obs[comparison.replicate_key].astype(str).to_numpy()
    rows: list[dict[str, Any]] = []
    for ct in ontogeny_cell_types(adata.obs, library, comparison):
        oriented = ontogeny_orientation(library, ct)
        allowed = {g for name in oriented for g in sets[name]["genes"]}
        ref_ct = ref[(ref["cell_type"] == ct) & ref["gene"].isin(allowed)].set_index("gene")
        shared = [g for g in ref_ct.index if g in position]
        if len(shared) < min_genes:
            note = (
                f"not estimable: {len(shared)} ontogeny gene(s) of {ct} are in both the reference "
                f"(with fetal != adult) and the data (need {min_genes}); add {ct} rows for "
                f"{sorted(allowed)} to the reference"
            )
            log.warning("development axis, %s: %s", ct, note)
            rows.append(_not_estimable_row(ct, "too_few_reference_genes", note, len(oriented)))
            continue
        adult = ref_ct.loc[shared, "adult"].to_numpy(dtype=float)
        direction = ref_ct.loc[shared, "fetal"].to_numpy(dtype=float) - adult
        distance = float(np.sqrt(direction @ direction))
        if distance < min_distance:
            note = (
                f"not estimable: the reference's fetal and adult {ct} differ by {distance:.3g} "
                f"(< {min_distance:.3g}, log-expression distance over {', '.join(shared)}); the "
                "projection would rescale donor noise"
            )
            log.warning("development axis, %s: %s", ct, note)
            rows.append(_not_estimable_row(ct, "reference_does_not_separate", note, len(oriented)))
            continue
        cells = np.flatnonzero(cell_type == ct)
        block = adata.X[cells][:, [position[g] for g in shared]]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        projection = (np.asarray(block, dtype=float) - adult) @ direction / (distance**2)
        per_donor = pd.DataFrame({"replicate": replicate[cells], "p": projection})
        added = 0
        for rep, part in per_donor.groupby("replicate", sort=True):
            n = len(part)
            if n < comparison.min_cells_per_replicate:
                continue
            mean = float(part["p"].mean())
            half = np.nan
            if n >= 2:
                half = (
                    float(stats.t.ppf(0.5 + LEVEL / 2, n - 1))
                    * float(part["p"].std(ddof=1))
                    / np.sqrt(n)
                )
            rows.append(
                {
                    "cell_type": ct,
                    "replicate": rep,
                    "condition": str(design.at[rep, condition_key]),
                    "n_cells": n,
                    "axis_score": mean,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "method": PROJECTION,
                    "n_sets": len(oriented),
                    "n_genes": len(shared),
                    "features": ",".join(shared),
                    "scale": "fetal_minus_adult",
                    NOTE: "",
                }
            )
            added += 1
        if not added:
            note = (
                f"not estimable: no {comparison.replicate_key} has "
                f"{comparison.min_cells_per_replicate} {ct} cells "
                "(comparison.min_cells_per_replicate)"
            )
            log.warning("development axis, %s: %s", ct, note)
            rows.append(_not_estimable_row(ct, "too_few_cells", note, len(oriented)))
    return pd.DataFrame(rows, columns=AXIS_COLUMNS)


def development_contrast(
    axis: pd.DataFrame, contrast: Contrast, *, min_donors: int
) -> pd.DataFrame:
    """Cord-vs-adult difference of donor projections per cell type, donors as the unit.

    Per cell type of `axis`: the mean donor projection of each group, their difference
    (condition - reference) with Welch's t interval and p-value
    (:func:`cordatlas.compare.donor_stats.welch_t`; donors' projections, not cells, are the
    observations), and Benjamini-Hochberg ``padj`` across the tested cell types. A cell type
    with fewer than `min_donors` donors with a projection in either group, or without any
    projection (the axis' own reason), is ``not_testable`` with the reason in ``note``.

    Returns
    -------
    pd.DataFrame
        :data:`CONTRAST_COLUMNS`, one row per cell type of `axis` (in its order).
    """
    condition, reference = check_contrast(contrast.as_tuple())
    rows = []
    for ct in dict.fromkeys(axis["cell_type"].astype(str)):
        part = axis[(axis["cell_type"].astype(str) == ct)]
        scores = pd.to_numeric(part["axis_score"], errors="coerce")
        values = part.assign(axis_score=scores)[np.isfinite(scores)]
        cond = values.loc[values["condition"] == condition, "axis_score"].to_numpy(dtype=float)
        ref = values.loc[values["condition"] == reference, "axis_score"].to_numpy(dtype=float)
        row: dict[str, Any] = {
            "cell_type": ct,
            "n_condition": int(cond.size),
            "n_reference": int(ref.size),
            "mean_condition": float(cond.mean()) if cond.size else np.nan,
            "mean_reference": float(ref.mean()) if ref.size else np.nan,
            "method": CONTRAST_METHOD,
        }
        row.update(dict.fromkeys(["difference", "ci_low", "ci_high", "se", "df", "pvalue"], np.nan))
        if values.empty:
            notes = [n for n in part[NOTE].astype(str) if n]
            row.update({EVIDENCE: NOT_TESTABLE, NOTE: notes[0] if notes else "no projection"})
        elif min(cond.size, ref.size) < min_donors:
            row["difference"] = row["mean_condition"] - row["mean_reference"]
            row.update(
                {
                    EVIDENCE: NOT_TESTABLE,
                    NOTE: (
                        f"not estimable: {cond.size} {condition} and {ref.size} {reference} "
                        f"donor(s) with a projection; the contrast needs at least {min_donors} "
                        "a side (signatures.development_min_donors)"
                    ),
                }
            )
        else:
            effect = welch_t(cond, ref, level=LEVEL)
            row.update({k: effect[k] for k in ("difference", "ci_low", "ci_high", "se", "df")})
            row["pvalue"] = effect["pvalue"]
            row.update({EVIDENCE: DONOR_LEVEL, NOTE: ""})
        rows.append(row)
    out = pd.DataFrame(rows, columns=CONTRAST_COLUMNS)
    out["padj"] = bh_adjust(out["pvalue"]) if len(out) else []
    # the study's question stated before the data (cord cells sit nearer the fetal programme):
    # its own family, adjusted over this table's cell types only
    out["family"] = PRESPECIFIED
    check_evidence(out[EVIDENCE], table="development contrast")
    return out
