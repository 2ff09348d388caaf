"""Which test each cell type gets: donor-level pseudobulk DE, the exploratory cell-level test, or none.

Light by design (pandas and numpy, no anndata, scanpy or scipy): the Snakefile imports
:func:`read_plan` while parsing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cordatlas.checks import check_contrast, require_columns
from cordatlas.errors import UserInputError
from cordatlas.params import ComparisonParams, Contrast
from cordatlas.vocabulary import (
    DONOR_LEVEL,
    EVIDENCE,
    EXPLORATORY,
    NOT_TESTABLE,
    NOTE,
    check_evidence,
)

log = logging.getLogger(__name__)

#: Values of the plan's and the results' ``method`` column.
METHOD_PSEUDOBULK = "pseudobulk_deseq2"
METHOD_CELL_LEVEL = "cell_level_wilcoxon"
METHOD_NOT_TESTED = "not_tested"

#: The evidence label each method's results carry (vocabulary.EVIDENCE_LABELS).
METHOD_EVIDENCE = {
    METHOD_PSEUDOBULK: DONOR_LEVEL,
    METHOD_CELL_LEVEL: EXPLORATORY,
    METHOD_NOT_TESTED: NOT_TESTABLE,
}

#: Columns of :func:`plan_comparisons`' result.
PLAN_COLUMNS = [
    "cell_type",
    "slug",
    "method",
    EVIDENCE,
    NOTE,
    "n_replicates_condition",
    "n_replicates_reference",
    "n_cells_condition",
    "n_cells_reference",
]


def pseudobulk_mask(
    obs: pd.DataFrame,
    *,
    cell_type: str,
    conditions: Sequence[str],
    cell_type_key: str = "cell_type",
    condition_key: str = "condition",
    min_cells: int = 10,
) -> np.ndarray:
    """Which pseudobulks stand for `cell_type` in a comparison: its rows of `conditions` with
    at least `min_cells` cells (the replicates the test uses and the figures show)."""
    return (
        (obs[cell_type_key].astype(str) == cell_type).to_numpy()
        & obs[condition_key].astype(str).isin(list(conditions)).to_numpy()
        & (pd.to_numeric(obs["n_cells"]).to_numpy() >= min_cells)
    )


def plan_comparisons(
    pseudobulk_obs: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Decide per cell type whether it gets a donor-level test, an exploratory one, or none.

    A replicate (donor) counts for a cell type when its pseudobulk holds at least
    ``comparison.min_cells_per_replicate`` cells. Then, in this order:

    - the cell type is in ``comparison.exclude_cell_types``: ``not_tested`` ("excluded by
      config");
    - a group has fewer than that many cells in total: ``not_tested`` ("absent in
      cord_blood", or how few cells it has), reported, never an error;
    - both groups have at least ``comparison.min_replicates_per_group`` usable replicates:
      ``pseudobulk_deseq2``;
    - otherwise ``cell_level_wilcoxon``: an exploratory cell-level test with no biological
      replication (see :func:`cordatlas.compare.cell_level.cell_level_de`).

    Parameters
    ----------
    pseudobulk_obs
        obs of :func:`cordatlas.compare.pseudobulk.aggregate_pseudobulk` (the config's
        ``cell_type_key`` and ``replicate_key``, `condition_key`, ``n_cells``).
    comparison
        config ``comparison``: keys, minimum cells and replicates, excluded cell types.
    contrast
        (condition, reference), e.g. cord_blood vs adult; other conditions are ignored.

    Returns
    -------
    DataFrame
        :data:`PLAN_COLUMNS`, one row per cell type present in `pseudobulk_obs` (categories
        of a categorical column included), in category or sorted order. ``slug`` is the
        wildcard-safe name (:func:`cordatlas.compare.pseudobulk.cell_type_slug`),
        ``evidence`` the label the method's results carry (:data:`METHOD_EVIDENCE`) and
        ``note`` why the cell type gets that method.

    Raises
    ------
    UserInputError
        A column is missing, the minimum replicates are below 2, or a condition of the
        contrast has no pseudobulk at all (a typo in the config, not a rare cell type).
    """
    pair = check_contrast(contrast.as_tuple())
    _check_plan_inputs(pseudobulk_obs, comparison, pair, condition_key=condition_key)
    types = pseudobulk_obs[comparison.cell_type_key]
    if isinstance(types.dtype, pd.CategoricalDtype):
        order = [str(c) for c in types.cat.categories]
    else:
        order = sorted(types.astype(str).unique())
    rows = [
        _plan_row(pseudobulk_obs, comparison, pair, cell_type, condition_key=condition_key)
        for cell_type in order
    ]
    return _finish_plan(pd.DataFrame(rows, columns=PLAN_COLUMNS))


def _check_plan_inputs(
    obs: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    *,
    condition_key: str,
) -> None:
    require_columns(
        obs.columns,
        [comparison.cell_type_key, comparison.replicate_key, condition_key, "n_cells"],
        table="pseudobulk table",
        fix="build it with aggregate_pseudobulk using the same cell_type_key, replicate_key "
        "and condition_key.",
    )
    min_replicates = comparison.min_replicates_per_group
    if min_replicates < 2:
        raise UserInputError(
            f"min_replicates={min_replicates}: a donor-level test needs at least 2 replicates "
            "per group to estimate variation between donors; set "
            "comparison.min_replicates_per_group >= 2."
        )
    if comparison.min_cells_per_replicate < 1:
        raise UserInputError(
            f"min_cells={comparison.min_cells_per_replicate}: set "
            "comparison.min_cells_per_replicate to at least 1."
        )
    present = set(obs[condition_key].astype(str))
    for group in contrast:
        if group not in present:
            raise UserInputError(
                f"condition {group!r} of the contrast has no cells (conditions present: "
                f"{sorted(present)}); fix the config's contrast or the sample sheet."
            )


def _plan_row(
    obs: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    cell_type: str,
    *,
    condition_key: str,
) -> dict[str, object]:
    """Cells and usable replicates of one cell type per group, and the method they allow."""
    from cordatlas.compare.pseudobulk import cell_type_slug  # pseudobulk.py imports anndata

    condition, reference = contrast
    min_cells = comparison.min_cells_per_replicate
    here = obs[comparison.cell_type_key].astype(str).to_numpy() == cell_type
    groups = obs[condition_key].astype(str).to_numpy()
    n_cells = pd.to_numeric(obs["n_cells"]).to_numpy()
    replicates = obs[comparison.replicate_key]
    counts = {}
    for group in contrast:
        rows = here & (groups == group)
        counts[group] = (
            int(n_cells[rows].sum()),
            int(replicates[rows & (n_cells >= min_cells)].nunique()),
        )
    method, note = _route(cell_type, counts, comparison)
    return {
        "cell_type": cell_type,
        "slug": cell_type_slug(cell_type),
        "method": method,
        EVIDENCE: METHOD_EVIDENCE[method],
        NOTE: note,
        "n_replicates_condition": counts[condition][1],
        "n_replicates_reference": counts[reference][1],
        "n_cells_condition": counts[condition][0],
        "n_cells_reference": counts[reference][0],
    }


def _route(
    cell_type: str, counts: Mapping[str, tuple[int, int]], comparison: ComparisonParams
) -> tuple[str, str]:
    """The method for one cell type and why, from ``{group: (cells, usable replicates)}``."""
    min_cells = comparison.min_cells_per_replicate
    min_replicates = comparison.min_replicates_per_group
    replicate_key = comparison.replicate_key
    if cell_type in {str(e) for e in comparison.exclude_cell_types}:
        return METHOD_NOT_TESTED, "excluded by config"
    if any(cells < min_cells for cells, _ in counts.values()):
        cells = {group: n for group, (n, _) in counts.items()}
        return METHOD_NOT_TESTED, _absence_note(cells, min_cells=min_cells)
    (condition, (_, reps_c)), (reference, (_, reps_r)) = counts.items()
    if reps_c >= min_replicates and reps_r >= min_replicates:
        return METHOD_PSEUDOBULK, (
            f"{reps_c} {condition} and {reps_r} {reference} {replicate_key}s with >= "
            f"{min_cells} cells: donor-level test"
        )
    short = [
        f"{n} {group} {replicate_key}{'s' if n != 1 else ''}"
        for group, (_, n) in counts.items()
        if n < min_replicates
    ]
    return METHOD_CELL_LEVEL, (
        f"only {' and '.join(short)} with >= {min_cells} cells (< min_replicates "
        f"{min_replicates}): exploratory cell-level test, no biological replication"
    )


def _absence_note(cells: Mapping[str, int], *, min_cells: int) -> str:
    absent = [group for group, n in cells.items() if n == 0]
    few = [
        f"{n} {'cell' if n == 1 else 'cells'} in {group}"
        for group, n in cells.items()
        if 0 < n < min_cells
    ]
    parts = []
    if absent:
        parts.append(f"absent in {' and '.join(absent)}")
    if few:
        parts.append(f"only {' and '.join(few)} (< min_cells {min_cells})")
    return "; ".join(parts)


def _finish_plan(plan: pd.DataFrame) -> pd.DataFrame:
    """Refuse colliding slugs, check the evidence labels, log the routing."""
    duplicated = plan["slug"][plan["slug"].duplicated()].tolist()
    if duplicated:
        names = plan.loc[plan["slug"].isin(duplicated), "cell_type"].tolist()
        raise UserInputError(
            f"cell types {names} map to the same file name {duplicated[0]!r}; rename one of them."
        )
    check_evidence(plan[EVIDENCE], table="DE plan")
    for method, n in plan["method"].value_counts().items():
        log.info("plan: %d cell types %s", n, method)
    return plan


def read_plan(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a plan written from :func:`plan_comparisons` (names, slugs and notes stay text)."""
    text = {c: str for c in ("cell_type", "slug", "method", EVIDENCE, NOTE)}
    return pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)


def cell_type_of_slug(plan: pd.DataFrame, slug: str) -> str:
    """The cell-type name behind a file-name slug in the plan."""
    return str(plan.set_index("slug").loc[slug, "cell_type"])


def planned_cell_types(plan: pd.DataFrame, method: str) -> list[tuple[str, str]]:
    """(cell type, slug) of every plan row tested with `method`, in the plan's order."""
    rows = plan[plan["method"] == method]
    return list(zip(rows["cell_type"].astype(str), rows["slug"].astype(str), strict=True))


#: Figures the DE rules draw per tested cell type: ``figures/<slug>_<kind>.png``.
DE_FIGURES = {METHOD_PSEUDOBULK: ("volcano", "heatmap"), METHOD_CELL_LEVEL: ("volcano",)}


def planned_tables(plan: pd.DataFrame, folders: Mapping[str, str | os.PathLike[str]]) -> list[str]:
    """The DE table of every tested cell type: ``<folder of its method>/<slug>.tsv``.

    `folders` maps each tested method (:data:`METHOD_PSEUDOBULK`, :data:`METHOD_CELL_LEVEL`)
    to the folder its rule writes (``results/de/pseudobulk``, ``results/de/cell_level``).
    """
    return [
        os.path.join(folders[method], f"{slug}.tsv")
        for method in DE_FIGURES
        for _, slug in planned_cell_types(plan, method)
    ]


def planned_figures(plan: pd.DataFrame, folders: Mapping[str, str | os.PathLike[str]]) -> list[str]:
    """The figures of every tested cell type (:data:`DE_FIGURES`), as :func:`planned_tables`."""
    return [
        os.path.join(folders[method], "figures", f"{slug}_{kind}.png")
        for method, kinds in DE_FIGURES.items()
        for _, slug in planned_cell_types(plan, method)
        for kind in kinds
    ]
