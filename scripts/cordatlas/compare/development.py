"""A fetal-to-adult developmental axis per donor and cell type, from the ontogeny gene sets."""

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

from cordatlas.checks import require_columns
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import expectation_for, library_sets
from cordatlas.genesets.scoring import symbol_index
from cordatlas.params import ComparisonParams

log = logging.getLogger(__name__)

#: Library category whose sets define the axis.
ONTOGENY = "ontogeny"
#: Columns of the axis tables (both methods).
AXIS_COLUMNS = [
    "cell_type",
    "replicate",
    "condition",
    "axis_score",
    "method",
    "n_sets",
    "n_genes",
    "features",
    "scale",
]
#: Columns of a development reference table.
REFERENCE_COLUMNS = ("gene", "cell_type", "fetal", "adult")
#: Columns of :func:`replicate_gene_means`' result.
GENE_MEAN_COLUMNS = ["cell_type", "replicate", "condition", "gene", "n_cells", "mean_expression"]

#: Default: the reference replicates' own sd is used as the unit unless it is below this
#: fraction of the pooled within-condition sd. With 2-4 reference donors the sd estimate is
#: itself noisy; a chance near-zero sd would blow the axis up, so it is replaced by the pooled
#: sd, which uses every donor's spread.
DEFAULT_MIN_SCALE_FRACTION = 0.5
#: Default minimum fetal-adult distance of a reference in a cell type (Euclidean norm of
#: fetal - adult mean log-normalised expression over the genes used). Below it the reference
#: does not separate the two ends and the projection would mostly rescale donor noise: in the
#: simulator, cell types without a planted ontogeny effect have distances of 0.02-0.19 while
#: progenitors and erythroid cells have 1-3.
DEFAULT_MIN_REFERENCE_DISTANCE = 0.2


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


def _pooled_sd(values: pd.Series, groups: pd.Series) -> float:
    """Within-group pooled standard deviation (groups with one value add nothing)."""
    num, dof = 0.0, 0
    for _, part in values.groupby(groups.to_numpy(), sort=False):
        if len(part) >= 2:
            num += float(part.var(ddof=1)) * (len(part) - 1)
            dof += len(part) - 1
    return float(np.sqrt(num / dof)) if dof > 0 else float("nan")


def development_axis(
    summary: pd.DataFrame,
    library: Mapping[str, Any],
    *,
    reference_condition: str = "adult",
    scoring_report: pd.DataFrame | None = None,
    min_scale_fraction: float = DEFAULT_MIN_SCALE_FRACTION,
) -> pd.DataFrame:
    """Fetal-to-adult axis per replicate and cell type, relative to the reference (adult) donors.

    For each cell type, the ontogeny sets that carry an up/down expectation there (fetal
    programme in progenitors; fetal haemoglobin up and BCL11A down in erythroid cells) are
    oriented (+ for up in neonatal cells, - for down) and averaged per replicate:
    ``m = mean_s(orientation_s * mean_score_s)``. The axis is then

        axis = (m - mean of m over the reference replicates) / scale

    so 0 is the reference (adult) mean and 1 is one unit further toward fetal. The unit
    (``scale`` column) is the reference replicates' sd (``reference_sd``) unless there are
    fewer than two of them or their sd is below `min_scale_fraction` x the pooled
    within-condition sd, in which case the pooled sd is used (``pooled_sd``): with few adult
    donors a chance near-zero sd would inflate every value. Without any spread the axis is NaN
    (``no_scale``). The axis is in donor-variation units, not a fraction of the fetal-adult
    distance: for that, supply a reference (`project_development_axis`).

    Parameters
    ----------
    summary
        Long table from `signatures.summarise_by_replicate`.
    library
        The library scored (its ontogeny sets define the axis).
    reference_condition
        The condition the axis is anchored on (0 = its mean).
    scoring_report
        `signatures.score_signatures`' report; when given, ``n_genes`` counts the genes found
        in the data, otherwise the sets' genes in the library.
    min_scale_fraction
        See above.

    Returns
    -------
    pd.DataFrame
        :data:`AXIS_COLUMNS`; ``method`` = ``relative_to_reference``, ``features`` = the sets
        used (``+name``/``-name``). Cell types without an applicable ontogeny set are absent.
    """
    if summary.empty:
        return pd.DataFrame(columns=AXIS_COLUMNS)
    sets = library_sets(library)
    found = (
        dict(zip(scoring_report["signature"], scoring_report["n_found"], strict=True))
        if scoring_report is not None
        else {}
    )
    rows = []
    for cell_type in dict.fromkeys(summary["cell_type"]):
        part = summary[summary["cell_type"] == cell_type]
        oriented = {
            name: sign
            for name, sign in ontogeny_orientation(library, cell_type).items()
            if name in set(part["signature"])
        }
        if not oriented:
            continue
        wide = part.pivot(index="replicate", columns="signature", values="mean_score")[
            list(oriented)
        ].dropna()
        if wide.empty:
            continue
        condition = part.drop_duplicates("replicate").set_index("replicate")["condition"]
        condition = condition.loc[wide.index].astype(str)
        signs = pd.Series(oriented, dtype=float)
        m = (wide * signs).mean(axis=1)
        is_ref = (condition == reference_condition).to_numpy()
        n_ref = int(is_ref.sum())
        pooled = _pooled_sd(m, condition)
        ref_sd = float(m[is_ref].std(ddof=1)) if n_ref >= 2 else float("nan")
        if n_ref == 0:
            centre, scale, scale_name = float("nan"), float("nan"), "no_reference_replicates"
            log.warning(
                "development axis, %s: no %s replicate with enough cells; axis not anchored",
                cell_type,
                reference_condition,
            )
        else:
            centre = float(m[is_ref].mean())
            if (
                np.isfinite(ref_sd)
                and ref_sd > 0
                and (not np.isfinite(pooled) or ref_sd >= min_scale_fraction * pooled)
            ):
                scale, scale_name = ref_sd, "reference_sd"
            elif np.isfinite(pooled) and pooled > 0:
                scale, scale_name = pooled, "pooled_sd"
            else:
                scale, scale_name = float("nan"), "no_scale"
        n_genes = sum(int(found.get(n, len(sets[n]["genes"]))) for n in oriented)
        features = ",".join(f"{'+' if s > 0 else '-'}{n}" for n, s in oriented.items())
        for replicate, value in m.items():
            rows.append(
                {
                    "cell_type": cell_type,
                    "replicate": replicate,
                    "condition": condition.loc[replicate],
                    "axis_score": (value - centre) / scale if np.isfinite(scale) else np.nan,
                    "method": "relative_to_reference",
                    "n_sets": len(oriented),
                    "n_genes": n_genes,
                    "features": features,
                    "scale": scale_name,
                }
            )
    return pd.DataFrame(rows, columns=AXIS_COLUMNS)


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
            f"columns {list(REFERENCE_COLUMNS)}, or to null to use the relative axis"
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


def project_development_axis(
    expression: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    library: Mapping[str, Any] | None = None,
    genes: Sequence[str] | None = None,
    min_genes: int = 2,
    min_distance: float = DEFAULT_MIN_REFERENCE_DISTANCE,
) -> pd.DataFrame:
    """Place each replicate x cell type on the adult -> fetal line of a reference: 0 adult, 1 fetal.

    With a replicate's mean expression x_g, and the reference's adult a_g and fetal f_g for the
    same cell type, the axis is the projection onto the line from adult to fetal:

        axis = sum_g (x_g - a_g)(f_g - a_g) / sum_g (f_g - a_g)^2

    0 means adult-like, 1 fetal-like; values between are intermediate (cord blood is expected
    there, Bunis et al. 2021), and values beyond 0-1 lie past either end. Genes with f_g = a_g
    carry no information and are dropped. The scale is only meaningful when the reference was
    normalised like the atlas (same log transform and scaling).

    A cell type is skipped (logged) when its reference barely separates fetal from adult
    (Euclidean distance of f - a over the genes used below `min_distance`): dividing by a tiny
    distance turns donor noise into large axis values.

    Parameters
    ----------
    expression
        From `replicate_gene_means`.
    reference
        From `read_development_reference`.
    library
        When given, each cell type uses the genes of the ontogeny sets whose claim applies to
        it (as `development_axis` does: fetal programme in progenitors, globin genes in
        erythroid cells); cell types without such a set are skipped.
    genes
        Restrict to these genes (e.g. `ontogeny_genes(library)`); None = no restriction.
    min_genes
        A replicate x cell type needs this many informative genes (present in both tables,
        fetal != adult) to get a value.
    min_distance
        Minimum fetal-adult distance of the reference in a cell type (log-expression units;
        default 0.2, see :data:`DEFAULT_MIN_REFERENCE_DISTANCE`).

    Returns
    -------
    pd.DataFrame
        :data:`AXIS_COLUMNS`; ``method`` = ``reference_projection``, ``features`` = the genes
        used, ``scale`` = ``fetal_minus_adult``. Skipped cell types are absent.
    """
    if expression.empty:
        return pd.DataFrame(columns=AXIS_COLUMNS)
    sets = library_sets(library) if library is not None else {}
    ref = reference.copy()
    if genes is not None:
        ref = ref[ref["gene"].isin(set(genes))]
    ref = ref[ref["fetal"] != ref["adult"]]
    rows = []
    for cell_type in dict.fromkeys(expression["cell_type"]):
        ref_ct = ref[ref["cell_type"] == cell_type].set_index("gene")
        n_sets = 0
        if library is not None:
            oriented = ontogeny_orientation(library, cell_type)
            allowed = {g for name in oriented for g in sets[name]["genes"]}
            ref_ct = ref_ct[ref_ct.index.isin(allowed)]
            n_sets = len(oriented)
            if not oriented:
                continue
        if ref_ct.empty:
            log.info("development reference has no informative gene for %s; skipped", cell_type)
            continue
        part = expression[expression["cell_type"] == cell_type]
        wide = part.pivot(index="replicate", columns="gene", values="mean_expression")
        shared = [g for g in ref_ct.index if g in wide.columns]
        if len(shared) < min_genes:
            log.info(
                "development reference: %s has %d informative gene(s) in the data (< %d); skipped",
                cell_type,
                len(shared),
                min_genes,
            )
            continue
        adult = ref_ct.loc[shared, "adult"].to_numpy(dtype=float)
        direction = ref_ct.loc[shared, "fetal"].to_numpy(dtype=float) - adult
        distance = float(np.sqrt(direction @ direction))
        if distance < min_distance:
            log.warning(
                "development reference: fetal and adult %s differ by only %.3g (< %.3g) over %s; "
                "skipped",
                cell_type,
                distance,
                min_distance,
                shared,
            )
            continue
        condition = part.drop_duplicates("replicate").set_index("replicate")["condition"]
        for replicate, values in wide[shared].iterrows():
            x = values.to_numpy(dtype=float)
            ok = np.isfinite(x)
            if ok.sum() < min_genes:
                continue
            rows.append(
                {
                    "cell_type": cell_type,
                    "replicate": replicate,
                    "condition": str(condition.loc[replicate]),
                    "axis_score": float((x[ok] - adult[ok]) @ direction[ok])
                    / float(direction[ok] @ direction[ok]),
                    "method": "reference_projection",
                    "n_sets": n_sets,
                    "n_genes": int(ok.sum()),
                    "features": ",".join(np.asarray(shared)[ok]),
                    "scale": "fetal_minus_adult",
                }
            )
    return pd.DataFrame(rows, columns=AXIS_COLUMNS)
