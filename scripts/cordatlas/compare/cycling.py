"""Cycling cells per donor and cell type (Tirosh 2016 S and G2/M scores) and a donor-level test of the condition difference."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from cordatlas.atlas.genes import measured_in_all
from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.composition import moderated_fit, transform_proportions
from cordatlas.compare.donor_stats import EXPLORATORY, bh_adjust, replicate_table
from cordatlas.genesets.library import library_sets
from cordatlas.genesets.scoring import check_log_normalised, score_gene_sets, symbol_index
from cordatlas.params import ComparisonParams, Contrast
from cordatlas.vocabulary import DONOR_LEVEL, EVIDENCE, NOT_TESTABLE, NOTE, check_evidence

log = logging.getLogger(__name__)

#: Library sets holding Tirosh et al. 2016's S-phase and G2/M genes (config/signatures.yaml).
S_SET, G2M_SET = "cell_cycle_S", "cell_cycle_G2M"
#: Columns of :func:`cycling_fractions`' result.
FRACTION_COLUMNS = ["cell_type", "replicate", "condition", "n_cells", "n_cycling", "fraction"]
#: Columns of :func:`cycling_tests`' result.
CYCLING_TEST_COLUMNS = [
    "cell_type",
    "n_condition",
    "n_reference",
    "mean_fraction_condition",
    "mean_fraction_reference",
    "difference",
    "ci_low",
    "ci_high",
    "se",
    "t",
    "df",
    "pvalue",
    "padj",
    "family",
    "transform",
    "method",
    "covariates",
    EVIDENCE,
    NOTE,
]
METHOD = "propeller_moderated_t"


def cell_cycle_phases(
    adata: ad.AnnData,
    library: Mapping[str, Any],
    *,
    min_genes: int,
    min_score: float,
    seed: int = 0,
    gene_symbols: str | None = None,
) -> pd.DataFrame | None:
    """Each cell's S and G2/M scores and phase (scanpy's ``score_genes_cell_cycle``).

    The genes are the library's ``cell_cycle_S`` and ``cell_cycle_G2M`` sets (Tirosh et al.
    2016, Science 352:189), restricted to genes measured in every sample; scanpy scores each set
    against expression-matched control genes (seeded). A cell is cycling when its larger score
    is at least `min_score`, and then in ``S`` or ``G2M`` by the larger score, else ``G1``.
    ``min_score = 0`` is scanpy's own rule (``G1`` when both scores are negative), which calls
    about half of the non-cycling cells cycling: their scores are noise around 0 (on the
    simulator 45 % of T cells, where 2 % were planted); see config ``signatures.cycling_min_score``.

    Returns
    -------
    pd.DataFrame or None
        Cells (index) x ``S_score``, ``G2M_score``, ``phase``, ``cycling``; None (logged) when
        either set has fewer than `min_genes` measured genes in the data.
    """
    check_log_normalised(adata)
    sets = library_sets(library)
    missing = [name for name in (S_SET, G2M_SET) if name not in sets]
    if missing:
        log.warning("cell cycle: the library has no set %s; no cycling calls", missing)
        return None
    symbols = symbol_index(adata, gene_symbols)
    measured = measured_in_all(adata)
    present = set(symbols[measured])
    s_genes = [g for g in sets[S_SET]["genes"] if g in present]
    g2m_genes = [g for g in sets[G2M_SET]["genes"] if g in present]
    if min(len(s_genes), len(g2m_genes)) < min_genes:
        log.warning(
            "cell cycle: %d S and %d G2/M genes measured (need %d each, signatures.min_genes); "
            "no cycling calls",
            len(s_genes),
            len(g2m_genes),
            min_genes,
        )
        return None
    # scanpy's score_genes_cell_cycle: each set against min(len(S), len(G2M)) controls per bin
    result = score_gene_sets(
        adata,
        {"S_score": s_genes, "G2M_score": g2m_genes},
        min_genes={"S_score": 1, "G2M_score": 1},
        seed=seed,
        ctrl_size=min(len(s_genes), len(g2m_genes)),
        gene_symbols=gene_symbols,
    )
    out = result.scores[["S_score", "G2M_score"]].astype(float)
    out["cycling"] = out.max(axis=1) >= min_score
    out["phase"] = np.where(
        out["cycling"], np.where(out["G2M_score"] > out["S_score"], "G2M", "S"), "G1"
    )
    out = out[["S_score", "G2M_score", "phase", "cycling"]]
    log.info(
        "cell cycle: %d S and %d G2/M genes; %d of %d cells cycling",
        len(s_genes),
        len(g2m_genes),
        int(out["cycling"].sum()),
        len(out),
    )
    return out


def cycling_fractions(
    obs: pd.DataFrame,
    cycling: pd.Series,
    comparison: ComparisonParams,
    *,
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Cells and cycling cells per cell type and replicate (donor), labels excluded by config left out.

    Returns
    -------
    pd.DataFrame
        :data:`FRACTION_COLUMNS`, one row per cell type x replicate with cells
        (``fraction = n_cycling / n_cells``), cell types in label order, replicates sorted.
    """
    cell_type_key, replicate_key = comparison.cell_type_key, comparison.replicate_key
    require_columns(
        obs.columns,
        [cell_type_key, replicate_key, condition_key],
        table="obs",
        fix=f"available: {sorted(map(str, obs.columns))}",
    )
    design = replicate_table(obs, replicate_key=replicate_key, condition_key=condition_key)
    labels = obs[cell_type_key]
    order = (
        [str(c) for c in labels.cat.categories]
        if isinstance(labels.dtype, pd.CategoricalDtype)
        else sorted(labels.astype(str).unique())
    )
    keep = ~labels.astype(str).isin(set(map(str, comparison.exclude_cell_types))).to_numpy()
    table = pd.DataFrame(
        {
            "cell_type": labels.astype(str).to_numpy()[keep],
            "replicate": obs[replicate_key].astype(str).to_numpy()[keep],
            "cycling": cycling.reindex(obs.index).fillna(False).astype(bool).to_numpy()[keep],
        }
    )
    counts = (
        table.groupby(["cell_type", "replicate"], sort=False)["cycling"]
        .agg(n_cells="size", n_cycling="sum")
        .reset_index()
    )
    counts["cell_type"] = pd.Categorical(counts["cell_type"], categories=order, ordered=True)
    counts = counts.sort_values(["cell_type", "replicate"]).reset_index(drop=True)
    counts["cell_type"] = counts["cell_type"].astype(str)
    counts["condition"] = counts["replicate"].map(design[condition_key]).astype(str)
    counts["n_cells"] = counts["n_cells"].astype(int)
    counts["n_cycling"] = counts["n_cycling"].astype(int)
    counts["fraction"] = counts["n_cycling"] / counts["n_cells"]
    return counts[FRACTION_COLUMNS]


def cycling_tests(
    fractions: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Test each cell type's cycling fraction between conditions with donors as the unit (propeller).

    The machinery of :func:`cordatlas.compare.composition.composition_tests`, applied to two
    "types" per cell type (cycling, not cycling): each donor's fraction is transformed
    (``comparison.composition_transform``, with speckle's half-cell pseudocount for ``logit``),
    a linear model intercept + condition + ``comparison.covariates`` is fitted per cell type,
    the residual variances are squeezed across cell types (limma's moderated t; with
    ``comparison.composition_trend`` the prior follows the mean) and Benjamini-Hochberg adjusts
    across tested cell types. Donors with fewer than ``comparison.min_cells_per_replicate`` cells
    of the type are left out of its test; a type with fewer than
    ``comparison.min_replicates_per_group`` such donors a side is ``not_testable``.
    ``difference`` and its 95 % interval are on the transformed scale.

    Returns
    -------
    pd.DataFrame
        :data:`CYCLING_TEST_COLUMNS`, one row per cell type of `fractions`.
    """
    pair = check_contrast(contrast.as_tuple())
    condition, reference = pair
    types = list(dict.fromkeys(fractions["cell_type"].astype(str)))
    if not types:
        return pd.DataFrame(columns=CYCLING_TEST_COLUMNS)
    used = fractions[fractions["n_cells"] >= comparison.min_cells_per_replicate]
    used = used[used["condition"].isin(pair)]
    transformed = pd.DataFrame(
        {
            "replicate": used["replicate"].to_numpy(),
            "cell_type": used["cell_type"].to_numpy(),
            "value": transform_proportions(
                used["n_cycling"],
                used["n_cells"],
                n_types=2,
                transform=comparison.composition_transform,
            ),
        }
    ).pivot(index="replicate", columns="cell_type", values="value")
    transformed = transformed.reindex(index=design.index, columns=types)
    result = moderated_fit(transformed, design, comparison, pair, condition_key)
    raw = used.pivot(index="replicate", columns="cell_type", values="fraction")
    raw = raw.reindex(columns=types)
    is_condition = used.drop_duplicates("replicate").set_index("replicate")["condition"]
    mean_c = raw.loc[raw.index.isin(is_condition.index[is_condition == condition])].mean()
    mean_r = raw.loc[raw.index.isin(is_condition.index[is_condition == reference])].mean()
    tested = result["pvalue"].notna().to_numpy()
    needed = max(comparison.min_replicates_per_group, 1)
    note = np.where(
        tested,
        "",
        f"fewer than {needed} {comparison.replicate_key}s a side with "
        f"{comparison.min_cells_per_replicate} cells (comparison.min_replicates_per_group, "
        "min_cells_per_replicate), or no residual variance",
    )
    out = pd.DataFrame(
        {
            "cell_type": result["cell_type"].astype(str),
            "n_condition": result["n_condition"].astype(int),
            "n_reference": result["n_reference"].astype(int),
            "mean_fraction_condition": mean_c.reindex(types).to_numpy(dtype=float),
            "mean_fraction_reference": mean_r.reindex(types).to_numpy(dtype=float),
            "difference": result["difference"],
            "ci_low": result["ci_low"],
            "ci_high": result["ci_high"],
            "se": result["se"],
            "t": result["t"],
            "df": result["df"],
            "pvalue": result["pvalue"],
            "padj": bh_adjust(result["pvalue"]),
            # the library states no expectation on cycling: one exploratory family, this table
            "family": EXPLORATORY,
            "transform": comparison.composition_transform,
            "method": METHOD,
            "covariates": result["covariates"],
            EVIDENCE: np.where(tested, DONOR_LEVEL, NOT_TESTABLE),
            NOTE: note,
        }
    )
    check_evidence(out[EVIDENCE], table="cycling tests")
    return out[CYCLING_TEST_COLUMNS]


def cycling_not_scored(cell_types: list[str], reason: str) -> pd.DataFrame:
    """One ``not_testable`` row per cell type when no cell could be called (`reason` in ``note``)."""
    rows = [
        {"cell_type": t, "n_condition": 0, "n_reference": 0, "transform": "", "method": METHOD,
         "covariates": "", EVIDENCE: NOT_TESTABLE, NOTE: reason}
        for t in cell_types
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=CYCLING_TEST_COLUMNS)
