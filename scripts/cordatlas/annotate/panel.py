"""Cell-type annotation: a cited marker panel scored per cell and summarised per cluster, and optional CellTypist."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.genesets.curated import merge_resources, read_yaml, validate_header
from cordatlas.genesets.scoring import score_gene_sets

log = logging.getLogger(__name__)

#: Allowed cell-type names: they become file names and Snakemake wildcard values.
CELL_TYPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Label of clusters the panel cannot name with enough support.
UNASSIGNED = "unassigned"

#: Keys of a panel file and of each of its entries (unknown keys are errors, not ignored).
PANEL_KEYS = ("version", "species", "description", "cell_types")
REQUIRED_PANEL_KEYS = ("version", "cell_types")
ENTRY_KEYS = ("description", "lineage", "markers", "sources")
REQUIRED_ENTRY_KEYS = ("markers", "sources")

#: Default minimum cluster-mean score for a label. Scores are in log-normalised expression
#: units (markers' mean minus the mean of expression-matched random control genes), so 0 is
#: what a marker set no more expressed than random genes gets, and the scale grows with
#: sequencing depth: clearly marked clusters score 0.5-3 on the simulated demo (3-7k UMI per
#: cell) but 0.05-1.6 on shallow 10x v1 PBMC (about 2,100 UMI per cell), where naive CD4 T cells
#: score 0.048. 0.03 keeps such shallow but real signals and rejects clusters whose best marker
#: set is not above random genes.
DEFAULT_MIN_SCORE = 0.03
#: Default minimum lead of the best over the runner-up cluster-mean score (same units). Real
#: separations seen were >= 0.04 (naive CD4 vs others in shallow PBMC, 0.044; naive vs memory
#: B in the demo, 0.31), while a 15-cell demo cluster mixing naive and memory CD4 T cells had
#: a lead of 0.004: 0.03 separates the two.
DEFAULT_MIN_MARGIN = 0.03

#: CellTypist models are trained on, and expect, log1p of counts per 10,000.
CELLTYPIST_TARGET_SUM = 1e4


# ============================================================================================
# The panel: reading, validating, merging
# ============================================================================================
def load_panel(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a marker-panel YAML file.

    Parameters
    ----------
    path
        YAML with ``version``, optional ``species`` and ``description``, and ``cell_types``:
        a mapping of names to entries with ``markers`` (non-empty list of gene symbols),
        ``sources`` (non-empty list of citations) and optional ``description`` and ``lineage``.

    Returns
    -------
    dict
        ``{"version": str, "species": str | None, "description": str, "cell_types": {name:
        {"description": str, "lineage": str, "markers": list[str], "sources": list[str]}}}``,
        entries in file order, duplicate markers within an entry removed.

    Raises
    ------
    UserInputError
        The file is missing, not YAML, or an entry or field is invalid (the message names the
        file, the entry and the field).
    """
    source = Path(path)
    content = read_yaml(
        source,
        what="marker panel",
        hint="set annotation.panel (or annotation.extra_panel) to an existing YAML file such as "
        "config/marker_panel.yaml",
    )
    return validate_panel(content, origin=str(source))


def validate_panel(content: Any, *, origin: str = "marker panel") -> dict[str, Any]:
    """Validate a panel already read into Python objects (see `load_panel` for the format).

    Parameters
    ----------
    content
        The parsed YAML document.
    origin
        Where it came from, quoted in error messages (a file path).

    Returns
    -------
    dict
        The normalised panel, as returned by `load_panel`.
    """
    where = f"marker panel {origin!r}"
    header = validate_header(
        content,
        where=where,
        keys=PANEL_KEYS,
        required=REQUIRED_PANEL_KEYS,
        entries_key="cell_types",
        entries_hint="cell-type names to entries with 'markers' and 'sources'",
        example="config/marker_panel.yaml",
    )
    cell_types = header["entries"]
    entries = {}
    for name, entry in cell_types.items():
        entries[str(name)] = _validate_entry(name, entry, where=where)
    return {
        "version": header["version"],
        "species": header["species"],
        "description": header["description"],
        "cell_types": entries,
    }


def _validate_entry(name: Any, entry: Any, *, where: str) -> dict[str, Any]:
    """One validated, normalised panel entry; errors name the entry and the field."""
    if not isinstance(name, str) or not CELL_TYPE_NAME.match(name):
        raise UserInputError(
            f"{where}: cell type name {name!r} is not allowed; use letters, digits, '_', '.' "
            "and '-', starting with a letter or digit (e.g. 'CD4_naive')"
        )
    if name == UNASSIGNED:
        raise UserInputError(
            f"{where}: cell type name {UNASSIGNED!r} is reserved for clusters the panel cannot "
            "name; rename the entry"
        )
    if not isinstance(entry, Mapping):
        raise UserInputError(
            f"{where}: cell type {name!r} must be a mapping with 'markers' and 'sources', got "
            f"{type(entry).__name__}"
        )
    unknown = sorted(set(map(str, entry)) - set(ENTRY_KEYS))
    if unknown:
        raise UserInputError(
            f"{where}: cell type {name!r} has unknown field(s) {unknown}; allowed fields are "
            f"{list(ENTRY_KEYS)}"
        )
    for field in REQUIRED_ENTRY_KEYS:
        if field not in entry:
            raise UserInputError(f"{where}: cell type {name!r} has no {field!r}; add a list")
    clean: dict[str, list[str]] = {}
    for field in REQUIRED_ENTRY_KEYS:
        values = entry[field]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v.strip() for v in values)
        ):
            what = "gene symbols" if field == "markers" else "citations (author, year, journal)"
            raise UserInputError(
                f"{where}: cell type {name!r} field {field!r} must be a non-empty list of "
                f"non-empty strings ({what}); got {values!r}"
            )
        clean[field] = list(dict.fromkeys(v.strip() for v in values))
    for field in ("description", "lineage"):
        if field in entry and not isinstance(entry[field], str):
            raise UserInputError(
                f"{where}: cell type {name!r} field {field!r} must be a string, got "
                f"{entry[field]!r}"
            )
    return {
        "description": str(entry.get("description", "")).strip(),
        "lineage": str(entry.get("lineage", "")).strip(),
        "markers": clean["markers"],
        "sources": clean["sources"],
    }


def merge_panels(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Extend or override a panel with a user's own entries.

    Parameters
    ----------
    base
        The curated panel (from `load_panel`).
    extra
        A user panel in the same format. An entry whose name is in `base` replaces that entry
        whole (markers, sources and all); other entries are added after the base's.

    Returns
    -------
    dict
        The merged panel; its version is ``"<base version>+<extra version>"`` so results record
        that the curated panel was modified.

    Raises
    ------
    UserInputError
        The two panels declare different species.
    """
    base = validate_panel(dict(base), origin="base panel")
    extra = validate_panel(dict(extra), origin="extra panel")
    return merge_resources(base, extra, entries_key="cell_types", what="marker panel")


def _cell_types(panel: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The panel's entries, from a full panel or a bare ``{name: entry}`` mapping."""
    if "cell_types" in panel and isinstance(panel["cell_types"], Mapping):
        return validate_panel(dict(panel), origin="panel")["cell_types"]
    return validate_panel({"version": "unversioned", "cell_types": dict(panel)}, origin="panel")[
        "cell_types"
    ]


# ============================================================================================
# Scoring cells and labelling clusters
# ============================================================================================
def score_cell_types(
    adata: ad.AnnData,
    panel: Mapping[str, Any],
    *,
    seed: int = 0,
    min_markers: int = 2,
    ctrl_size: int = 50,
    n_bins: int = 25,
    gene_symbols: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every cell for every panel cell type (scanpy's `score_genes`).

    A cell's score for a type is the mean log-normalised expression of the type's markers
    minus the mean of randomly drawn control genes from the same expression bins (Satija et
    al. 2015, as in Seurat's AddModuleScore and `sc.tl.score_genes`); the control draw is
    seeded, so scores are reproducible. Markers absent from the data are dropped; a type with
    fewer than `min_markers` markers present is not scored and is listed as skipped.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised expression in X (raw counts are refused).
    panel
        A panel from `load_panel` / `merge_panels` (or a bare ``{name: entry}`` mapping).
    seed
        random_state of the control-gene draw.
    min_markers
        Types with fewer markers present in the data are skipped.
    ctrl_size, n_bins
        Control genes per bin and number of expression bins (scanpy's defaults: 50, 25).
    gene_symbols
        var column with gene symbols when var_names are not symbols (e.g. Ensembl ids).

    Returns
    -------
    scores
        Cells (adata.obs_names) x scored types (panel order), float.
    report
        One row per panel type: ``cell_type``, ``lineage``, ``n_markers``, ``n_present``,
        ``markers_used``, ``markers_missing`` (comma-separated), ``scored`` and ``reason``.

    Raises
    ------
    UserInputError
        X holds raw counts, or no panel type has `min_markers` markers in the data.
    """
    entries = _cell_types(panel)
    result = score_gene_sets(
        adata,
        {name: entry["markers"] for name, entry in entries.items()},
        min_genes=dict.fromkeys(entries, min_markers),
        seed=seed,
        ctrl_size=ctrl_size,
        n_bins=n_bins,
        gene_symbols=gene_symbols,
    )
    rows = []
    for name, entry in entries.items():
        used, missing = result.used[name], result.missing[name]
        scored = name in result.scores
        reason = ""
        if not scored:
            reason = (
                f"only {len(used)} of {len(entry['markers'])} markers in the data (< {min_markers})"
            )
            log.warning("cell type %s not scored: %s (missing: %s)", name, reason, missing)
        rows.append(
            {
                "cell_type": name,
                "lineage": entry["lineage"],
                "n_markers": len(entry["markers"]),
                "n_present": len(used),
                "markers_used": ",".join(used),
                "markers_missing": ",".join(missing),
                "scored": scored,
                "reason": reason,
            }
        )
    report = pd.DataFrame(rows)
    symbols = result.symbols
    if result.scores.columns.empty:
        raise UserInputError(
            f"no marker-panel cell type has {min_markers} or more of its markers among the "
            f"data's {adata.n_vars} genes (e.g. {list(symbols[:3])}); check that genes are HGNC "
            "symbols, or pass gene_symbols= the var column that holds them"
        )
    return result.scores, report


def annotate_clusters(
    adata: ad.AnnData,
    scores: pd.DataFrame,
    *,
    cluster_key: str = "leiden",
    min_score: float = DEFAULT_MIN_SCORE,
    min_margin: float = DEFAULT_MIN_MARGIN,
    lineages: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Label each cluster with the panel type of highest mean score, or ``unassigned``.

    When the top two types tie (margin below `min_margin`) but share a lineage in `lineages`
    (e.g. B_naive and B_memory, both "B"), the cluster gets the lineage label ``{lineage}_lineage``
    rather than ``unassigned``: the broad identity is clear even when the subtype is not.

    For each cluster the per-cell scores are averaged per type; the best type is the label
    unless its mean score is below `min_score` (the cluster expresses no entry's markers
    clearly) or its lead over the runner-up is below `min_margin` (two entries fit equally
    well, e.g. a doublet cluster or a type missing from the panel). Labelling whole clusters,
    not cells, uses the clustering to pool the sparse marker counts of single cells.

    **Confidence** of a cluster is the fraction of its cells whose own highest-scoring type
    equals the cluster's best type (``top_type``): 1 when every cell agrees, near
    1 / (number of types) when cells point everywhere. It is reported for unassigned clusters
    too (for their ``top_type``), and every cell gets its cluster's value.

    Parameters
    ----------
    adata
        The clustered atlas; modified in place: ``obs["cell_type"]`` (categorical, panel
        types plus ``unassigned``), ``obs["cell_type_confidence"]`` (float) and
        ``obsm["cell_type_scores"]`` (the scores as a DataFrame aligned to obs_names).
    scores
        Per-cell scores from `score_cell_types` (index: adata.obs_names).
    cluster_key
        obs column holding the clusters.
    min_score
        Minimum best mean score (log-expression units; default 0.03, see DEFAULT_MIN_SCORE).
    min_margin
        Minimum best minus runner-up mean score (default 0.03, see DEFAULT_MIN_MARGIN).

    Returns
    -------
    pd.DataFrame
        One row per cluster: ``cluster``, ``n_cells``, ``cell_type`` (label or
        ``unassigned``), ``top_type``, ``score``, ``runner_up``, ``runner_up_score``,
        ``margin``, ``confidence``, ``assigned``.
    """
    if cluster_key not in adata.obs:
        raise UserInputError(
            f"cluster key {cluster_key!r} is not an obs column; use one of "
            f"{sorted(adata.obs.columns)}"
        )
    if scores.shape[1] == 0:
        raise UserInputError("no cell type was scored; see the scoring report for missing markers")
    missing_cells = adata.obs_names.difference(scores.index)
    if len(missing_cells):
        raise ValueError(
            f"scores lack {len(missing_cells)} of adata's cells (e.g. {missing_cells[0]!r}); "
            "score the same AnnData you annotate"
        )
    scores = scores.loc[adata.obs_names]
    clusters = adata.obs[cluster_key].astype(str)
    cell_top = scores.idxmax(axis=1)
    means = scores.groupby(clusters.to_numpy(), sort=False).mean()
    order = _cluster_order(adata.obs[cluster_key])
    rows = []
    for cluster in order:
        if cluster not in means.index:
            continue
        ranked = means.loc[cluster].sort_values(ascending=False, kind="stable")
        top_type, top = str(ranked.index[0]), float(ranked.iloc[0])
        if len(ranked) > 1:
            runner_up, runner_score = str(ranked.index[1]), float(ranked.iloc[1])
        else:
            runner_up, runner_score = "", float("nan")
        margin = top - runner_score if runner_up else float("inf")
        in_cluster = (clusters == cluster).to_numpy()
        confidence = float((cell_top.to_numpy()[in_cluster] == top_type).mean())
        assigned = top >= min_score and margin >= min_margin
        label = top_type if assigned else UNASSIGNED
        lineage = (lineages or {}).get(top_type)
        if (
            not assigned
            and top >= min_score
            and lineage
            and lineage == (lineages or {}).get(runner_up)
        ):
            label, assigned = f"{lineage}_lineage", True
        rows.append(
            {
                "cluster": cluster,
                "n_cells": int(in_cluster.sum()),
                "cell_type": label,
                "top_type": top_type,
                "score": top,
                "runner_up": runner_up,
                "runner_up_score": runner_score,
                "margin": margin,
                "confidence": confidence,
                "assigned": bool(assigned),
            }
        )
    table = pd.DataFrame(rows)
    label = dict(zip(table["cluster"], table["cell_type"], strict=True))
    confidence = dict(zip(table["cluster"], table["confidence"], strict=True))
    categories = [c for c in scores.columns if c in set(table["cell_type"])]
    categories += sorted(set(table["cell_type"]) - set(categories) - {UNASSIGNED})
    if (~table["assigned"]).any():
        categories.append(UNASSIGNED)
    adata.obs["cell_type"] = pd.Categorical(clusters.map(label).to_numpy(), categories=categories)
    adata.obs["cell_type_confidence"] = clusters.map(confidence).to_numpy(dtype=np.float64)
    adata.obsm["cell_type_scores"] = scores.copy()
    adata.uns["cell_type_annotation"] = {
        "method": "marker panel, sc.tl.score_genes, cluster mean",
        "cluster_key": cluster_key,
        "min_score": float(min_score),
        "min_margin": float(min_margin),
        "confidence": "fraction of the cluster's cells whose own top-scoring type is the "
        "cluster's best type",
    }
    log.info(
        "annotated %d clusters: %d assigned, %d unassigned",
        len(table),
        int(table["assigned"].sum()),
        int((~table["assigned"]).sum()),
    )
    return table


def _cluster_order(column: pd.Series) -> list[str]:
    """Cluster ids in their categorical order, numeric ids sorted as numbers."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        values = [str(c) for c in column.cat.categories]
    else:
        values = sorted(map(str, column.unique()))
    if all(v.isdigit() for v in values):
        values = sorted(values, key=int)
    return values


# ============================================================================================
# CellTypist with a user-supplied model
# ============================================================================================
def _celltypist_input(adata: ad.AnnData, counts_layer: str | None) -> ad.AnnData:
    """A temporary AnnData with log1p(CP10k) expression of all genes, as CellTypist expects."""
    if counts_layer is not None and counts_layer in adata.layers:
        counts = adata.layers[counts_layer]
    else:
        block = adata.X[: min(adata.n_obs, 500)]
        values = block.data if sp.issparse(block) else np.asarray(block).ravel()
        if values.size and not np.all(np.mod(values, 1) == 0):
            raise UserInputError(
                f"CellTypist needs raw counts: adata has no layers[{counts_layer!r}] and X is "
                "not integer counts; keep raw counts in layers['counts'] (the workflow does)"
            )
        counts = adata.X
    work = ad.AnnData(
        X=sp.csr_matrix(counts, dtype=np.float32),
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names.astype(str)),
    )
    work.var_names_make_unique()
    sc.pp.normalize_total(work, target_sum=CELLTYPIST_TARGET_SUM)
    sc.pp.log1p(work)
    return work


def celltypist_annotate(
    adata: ad.AnnData,
    model_path: str | os.PathLike[str],
    *,
    cluster_key: str = "leiden",
    majority_voting: bool = True,
    counts_layer: str | None = "counts",
) -> pd.DataFrame:
    """Annotate cells with a CellTypist model read from a local file (never downloaded).

    CellTypist's logistic-regression models expect log1p of counts per 10,000 over all genes
    (Domínguez Conde et al. 2022), not the atlas's median-depth shifted log; a temporary AnnData
    is therefore built from raw counts (``layers[counts_layer]``, or X when it holds counts)
    normalised to 1e4 and log1p-transformed. `adata` itself is not changed except for the two
    obs columns written.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layers[counts_layer]`` (or in X); gene symbols in
        var_names, as the model's features are.
    model_path
        A CellTypist model (.pkl) on disk, trained with `celltypist.train` or downloaded
        beforehand by the user.
    cluster_key
        obs column used as CellTypist's over-clustering for majority voting.
    majority_voting
        Replace each cell's label by its cluster's majority label (CellTypist's
        ``majority_voting``); CellTypist skips voting for 50 cells or fewer.
    counts_layer
        Layer with raw counts.

    Returns
    -------
    pd.DataFrame
        Per cell (index obs_names): ``celltypist_label`` (majority-voted label when voting,
        else the per-cell prediction), ``celltypist_predicted`` (per-cell prediction) and
        ``celltypist_conf`` (the model's probability of ``celltypist_label`` for the cell).
        ``obs["celltypist_label"]`` (categorical) and ``obs["celltypist_conf"]`` are added.

    Raises
    ------
    UserInputError
        The model file is missing or unreadable, shares no gene with the data, or
        `cluster_key` is missing when voting.
    """
    path = Path(model_path)
    if not path.is_file():
        raise UserInputError(
            f"CellTypist model {str(path)!r} not found; set annotation.celltypist_model to an "
            "existing model file (.pkl, trained with celltypist.train or downloaded beforehand: "
            "the workflow never downloads models) or to null to skip CellTypist"
        )
    if majority_voting and cluster_key not in adata.obs:
        raise UserInputError(
            f"CellTypist majority voting needs the clusters in obs[{cluster_key!r}], which is "
            f"missing; use one of {sorted(adata.obs.columns)} or majority_voting=False"
        )
    import celltypist
    from celltypist import models

    try:
        # an absolute path (it contains "/") is never looked up among downloadable models
        model = models.Model.load(model=str(path.resolve()))
    except Exception as err:  # CellTypist raises bare Exception for unreadable pickles
        raise UserInputError(
            f"CellTypist model {str(path)!r} could not be read ({err}); pass a model saved by "
            "celltypist (Model.write or celltypist.train)"
        ) from None
    work = _celltypist_input(adata, counts_layer)
    shared = work.var_names.intersection(pd.Index(model.features))
    if len(shared) == 0:
        raise UserInputError(
            f"CellTypist model {str(path)!r} shares no gene with the data (model genes e.g. "
            f"{list(model.features[:3])}, data genes e.g. {list(work.var_names[:3])}); use a "
            "model trained on gene symbols of the same species"
        )
    log.info(
        "CellTypist: model %s, %d of its %d genes in the data",
        path,
        len(shared),
        len(model.features),
    )
    if majority_voting:
        work.obs["over_clustering"] = adata.obs[cluster_key].astype(str).to_numpy()
    result = celltypist.annotate(
        work,
        model=model,
        majority_voting=majority_voting,
        over_clustering="over_clustering" if majority_voting else None,
    )
    labels = result.predicted_labels
    predicted = labels["predicted_labels"].astype(str)
    if majority_voting and "majority_voting" in labels:
        final = labels["majority_voting"].astype(str)
    else:
        final = predicted
    probability = result.probability_matrix
    column = probability.columns.get_indexer(final.to_numpy())
    conf = probability.to_numpy()[np.arange(len(final)), column]
    table = pd.DataFrame(
        {
            "celltypist_label": final.to_numpy(),
            "celltypist_predicted": predicted.to_numpy(),
            "celltypist_conf": conf.astype(np.float64),
        },
        index=adata.obs_names.copy(),
    )
    adata.obs["celltypist_label"] = pd.Categorical(table["celltypist_label"])
    adata.obs["celltypist_conf"] = table["celltypist_conf"].to_numpy()
    return table
