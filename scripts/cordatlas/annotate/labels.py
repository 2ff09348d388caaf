"""Cell-type labels from the marker panel: every cell scored per type, each cluster named by its mean."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.annotate.panel import LINEAGE_SUFFIX, cell_type_entries, lineage_entries
from cordatlas.checks import require_columns
from cordatlas.errors import UserInputError
from cordatlas.genesets.scoring import score_gene_sets, symbol_index
from cordatlas.vocabulary import UNASSIGNED

log = logging.getLogger(__name__)


def lineage_label(lineage: str) -> str:
    """The label a cluster gets when only its lineage is clear (``T`` -> ``T_lineage``)."""
    return f"{lineage}{LINEAGE_SUFFIX}"


def unmeasured_genes(adata: ad.AnnData) -> dict[str, set[str]]:
    """Genes (var_names) each sample did not measure, from ``uns["unmeasured_genes"]``.

    The merge writes ``{sample id: [var_names]}`` for samples that lack some of the atlas's
    genes (zero-filled in X); a sample measuring every gene is absent. An atlas without the
    key measured every gene in every sample.
    """
    record = adata.uns.get("unmeasured_genes", {}) or {}
    return {str(sample): {str(g) for g in np.atleast_1d(genes)} for sample, genes in record.items()}


def measured_groups(
    adata: ad.AnnData, *, sample_key: str = "sample"
) -> list[tuple[np.ndarray, frozenset[str]]]:
    """Cells grouped by the genes their sample did not measure: ``[(cell mask, unmeasured)]``.

    One group holding every cell when all samples measured all genes.
    """
    missing = {s: g for s, g in unmeasured_genes(adata).items() if g}
    if not missing:
        return [(np.ones(adata.n_obs, dtype=bool), frozenset())]
    require_columns(
        adata.obs.columns,
        [sample_key],
        table="the atlas's obs",
        fix="keep the sample column: uns['unmeasured_genes'] names genes per sample",
    )
    samples = adata.obs[sample_key].astype(str).to_numpy()
    per_cell = np.array([frozenset(missing.get(s, ())) for s in samples], dtype=object)
    groups = list(dict.fromkeys(per_cell))
    return [(per_cell == group, group) for group in groups]


def score_cell_types(
    adata: ad.AnnData,
    panel: Mapping[str, Any],
    *,
    seed: int = 0,
    min_markers: int = 2,
    ctrl_size: int = 50,
    n_bins: int = 25,
    gene_symbols: str | None = None,
    sample_key: str = "sample",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every cell for every panel cell type and lineage (scanpy's `score_genes`).

    A cell's score for a marker set is the mean log-normalised expression of the set's markers
    minus the mean of randomly drawn control genes from the same expression bins (Satija et
    al. 2015, as in Seurat's AddModuleScore and `sc.tl.score_genes`); the control draw is
    seeded, so scores are reproducible. Each cell is scored on the genes its own sample
    measured (``uns["unmeasured_genes"]``, see `unmeasured_genes`): a zero-filled gene the
    sample never measured is not evidence of absence, so it is neither a marker nor a control
    for that sample's cells. A set with fewer than `min_markers` markers measured in a sample
    is not scored for that sample's cells (NaN) and, when that holds for every sample, listed
    as not scored.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised expression in X (raw counts are refused).
    panel
        A panel from `load_panel` / `merge_panels` (or a bare ``{name: entry}`` mapping).
        Its ``lineages`` are scored too, as columns ``{lineage}_lineage``.
    seed
        random_state of the control-gene draw.
    min_markers
        Sets with fewer markers measured are not scored.
    ctrl_size, n_bins
        Control genes per bin and number of expression bins (scanpy's defaults: 50, 25).
    gene_symbols
        var column with gene symbols when var_names are not symbols (e.g. Ensembl ids).
    sample_key
        obs column naming each cell's sample (needed only when some genes are unmeasured).

    Returns
    -------
    scores
        Cells (adata.obs_names) x scored sets (panel types in panel order, then lineages as
        ``{lineage}_lineage``), float, NaN where the cell's sample measured too few markers.
    report
        One row per set: ``cell_type``, ``level`` (``subtype`` or ``lineage``), ``lineage``,
        ``n_markers``, ``n_present`` (measured in at least one sample), ``markers_used``,
        ``markers_missing`` (measured in no sample), ``markers_unmeasured_in`` (``sample:
        gene,gene`` for markers some samples lack; ``;``-separated), ``scored``, ``reason``.

    Raises
    ------
    UserInputError
        X holds raw counts, or no panel type has `min_markers` markers in the data.
    """
    entries = cell_type_entries(panel)
    sets = {name: entry["markers"] for name, entry in entries.items()}
    sets |= {lineage_label(n): e["markers"] for n, e in lineage_entries(panel).items()}
    parts, used = [], {name: set() for name in sets}
    for mask, unmeasured in measured_groups(adata, sample_key=sample_key):
        view = adata if mask.all() and not unmeasured else adata[mask]
        if unmeasured:
            view = view[:, ~view.var_names.isin(list(unmeasured))]
        result = score_gene_sets(
            view,
            sets,
            min_genes=dict.fromkeys(sets, min_markers),
            seed=seed,
            ctrl_size=ctrl_size,
            n_bins=n_bins,
            gene_symbols=gene_symbols,
        )
        parts.append(result.scores)
        for name in sets:
            used[name].update(result.used[name])
    columns = [name for name in sets if any(name in part for part in parts)]
    scores = pd.concat(parts).reindex(index=adata.obs_names, columns=columns).astype(np.float64)
    if not any(name in entries for name in columns):
        symbols = symbol_index(adata, gene_symbols)
        raise UserInputError(
            f"no marker-panel cell type has {min_markers} or more of its markers among the "
            f"data's {adata.n_vars} genes (e.g. {list(symbols[:3])}); check that genes are HGNC "
            "symbols, or pass gene_symbols= the var column that holds them"
        )
    report = _scoring_report(adata, entries, sets, used, columns, min_markers, gene_symbols)
    return scores, report


def _scoring_report(
    adata: ad.AnnData,
    entries: Mapping[str, Mapping[str, Any]],
    sets: Mapping[str, list[str]],
    used: Mapping[str, set[str]],
    scored: list[str],
    min_markers: int,
    gene_symbols: str | None,
) -> pd.DataFrame:
    """One row per marker set: which markers were measured where, and whether it was scored."""
    symbol_of = dict(zip(adata.var_names, symbol_index(adata, gene_symbols), strict=True))
    lacking = {
        sample: {symbol_of[g] for g in genes if g in symbol_of}
        for sample, genes in unmeasured_genes(adata).items()
    }
    rows = []
    for name, markers in sets.items():
        present = [g for g in markers if g in used[name]]
        partly = "; ".join(
            f"{sample}: {','.join(g for g in present if g in genes)}"
            for sample, genes in lacking.items()
            if any(g in genes for g in present)
        )
        reason = "" if name in scored else (
            f"fewer than {min_markers} of {len(markers)} markers measured in every sample "
            f"(measured anywhere: {len(present)})"
        )  # fmt: skip
        if reason:
            log.warning("%s not scored: %s", name, reason)
        level = "subtype" if name in entries else "lineage"
        rows.append({
            "cell_type": name,
            "level": level,
            "lineage": entries[name]["lineage"] if level == "subtype" else name[: -len(LINEAGE_SUFFIX)],
            "n_markers": len(markers),
            "n_present": len(present),
            "markers_used": ",".join(present),
            "markers_missing": ",".join(g for g in markers if g not in used[name]),
            "markers_unmeasured_in": partly,
            "scored": name in scored,
            "reason": reason,
        })  # fmt: skip
    return pd.DataFrame(rows)


#: Decimals scores and margins are rounded to before they are compared with the cut-offs; the
#: table shows the rounded values, so what it shows is what was compared (float32 expression
#: carries about 7 significant digits, so finer differences are noise).
DECIMALS = 6


@dataclass(frozen=True)
class Ranking:
    """The best and second-best marker set of one cluster among some candidates."""

    top: str
    score: float
    runner_up: str
    runner_up_score: float
    margin: float

    def passes(self, *, min_score: float, min_margin: float) -> bool:
        """The documented rule: score >= min_score and a lead >= min_margin (a tie never passes)."""
        return bool(self.top) and self.score >= min_score and self.margin >= min_margin and (
            self.margin > 0
        )  # fmt: skip


def rank_sets(mean_scores: pd.Series, candidates: Sequence[str]) -> Ranking:
    """Rank `candidates` by a cluster's mean scores (NaN: not scored), rounded to `DECIMALS`.

    A single candidate has margin ``inf`` (nothing competes); none gives an empty ranking.
    """
    ranked = mean_scores.reindex(list(candidates)).dropna().round(DECIMALS)
    ranked = ranked.sort_values(ascending=False, kind="stable")
    if ranked.empty:
        return Ranking("", float("nan"), "", float("nan"), float("nan"))
    top, score = str(ranked.index[0]), float(ranked.iloc[0])
    if len(ranked) == 1:
        return Ranking(top, score, "", float("nan"), float("inf"))
    runner_score = float(ranked.iloc[1])
    margin = round(score - runner_score, DECIMALS)
    return Ranking(top, score, str(ranked.index[1]), runner_score, margin)


def annotate_clusters(
    adata: ad.AnnData,
    scores: pd.DataFrame,
    *,
    cluster_key: str = "leiden",
    min_score: float,
    min_margin: float,
    lineages: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Label each cluster with a panel subtype, else its lineage, else ``unassigned``.

    Per cluster the per-cell scores are averaged per marker set (cells whose sample measured
    too few of a set's markers are left out of its mean). A ranking *passes* when its best
    mean score is at least `min_score` and leads the runner-up by at least `min_margin`
    (scores and margins rounded to `DECIMALS`; an exact tie never passes). Then:

    1. **Lineage** (panels with ``lineages``): the lineage marker sets are ranked. When that
       ranking passes, the lineage is decided and only its subtypes compete in step 2, so a
       cytotoxic NK cluster cannot be called CD8_effector on genes both share.
    2. **Subtype**: the candidate subtypes are ranked; a passing ranking names the subtype.
    3. Otherwise a decided lineage labels the cluster ``{lineage}_lineage`` (its subtypes
       are unclear or their markers were not measured); without a decided lineage, the
       cluster is ``unassigned``.

    Labelling whole clusters, not cells, uses the clustering to pool the sparse marker
    counts of single cells. **Confidence** is the fraction of the cluster's cells whose own
    best set among the same candidates is the cluster's: 1 when every cell agrees.

    Parameters
    ----------
    adata
        The clustered atlas; modified in place: ``obs["cell_type"]`` (categorical: panel
        types and lineage labels in score order, ``unassigned`` last),
        ``obs["cell_type_confidence"]`` (float) and ``obsm["cell_type_scores"]`` (the scores
        as a DataFrame aligned to obs_names).
    scores
        Per-cell scores from `score_cell_types` (index: adata.obs_names; lineage sets as
        ``{lineage}_lineage`` columns).
    cluster_key
        obs column holding the clusters.
    min_score
        Minimum best mean score, config ``annotation.min_score``
        (:class:`cordatlas.params.AnnotationParams`; the default is in the config schema).
        Scores are in log-normalised expression units (markers' mean minus the mean of
        expression-matched random control genes), so 0 is what a marker set no more expressed
        than random genes gets, and the scale grows with sequencing depth.
    min_margin
        Minimum lead of the best over the runner-up (same units), config
        ``annotation.min_margin``.
    lineages
        Lineage of each panel subtype (the panel entries' ``lineage``).

    Returns
    -------
    pd.DataFrame
        One row per cluster: ``cluster``, ``n_cells``, ``cell_type``, ``level``
        (``subtype``, ``lineage`` or ``unassigned``), then the ranking behind the label
        (``score``, ``runner_up``, ``runner_up_score``, ``margin``: the lineage ranking for
        a lineage label, the subtype ranking otherwise), ``confidence``, ``assigned``,
        ``lineage`` (of the label), the lineage ranking (``lineage_top``, ``lineage_score``,
        ``lineage_runner_up``, ``lineage_runner_up_score``, ``lineage_margin``) and the
        subtype ranking (``top_type``, ``top_type_score``, ``top_type_runner_up``,
        ``top_type_runner_up_score``, ``top_type_margin``); columns `TABLE_COLUMNS`.
    """
    _check_scores(adata, scores, cluster_key=cluster_key)
    lineages = dict(lineages or {})
    scores = scores.loc[adata.obs_names]
    clusters = adata.obs[cluster_key].astype(str)
    means = scores.groupby(clusters.to_numpy(), sort=False).mean()
    lineage_sets = [c for c in scores.columns if c in {lineage_label(v) for v in lineages.values()}]
    subtypes = [c for c in scores.columns if not c.endswith(LINEAGE_SUFFIX)]
    rows = []
    for cluster in _cluster_order(adata.obs[cluster_key]):
        if cluster not in means.index:
            continue
        in_cluster = (clusters == cluster).to_numpy()
        row = _label_cluster(
            means.loc[cluster],
            lineage_sets=lineage_sets,
            subtypes=subtypes,
            lineages=lineages,
            min_score=min_score,
            min_margin=min_margin,
        )
        candidates = row.pop("_candidates")
        own_best = scores.loc[in_cluster, candidates].fillna(-np.inf).idxmax(axis=1)
        winner = row["lineage_top"] if row["level"] == "lineage" else row["top_type"]
        row["confidence"] = float((own_best.to_numpy() == winner).mean()) if winner else 0.0
        rows.append({"cluster": cluster, "n_cells": int(in_cluster.sum()), **row})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    _write_labels(adata, scores, table, clusters=clusters)
    adata.uns["cell_type_annotation"] = {
        "method": "marker panel, scanpy's score_genes method on each sample's measured genes, cluster "
        "mean; lineage first, then subtype within the lineage",
        "cluster_key": cluster_key,
        "min_score": float(min_score),
        "min_margin": float(min_margin),
        "confidence": "fraction of the cluster's cells whose own best set (among the same "
        "candidates) is the cluster's",
    }
    log.info(
        "annotated %d clusters: %s",
        len(table),
        table["level"].value_counts().to_dict(),
    )
    return table


#: Columns of the per-cluster table (results/annotate/cluster_labels.tsv).
TABLE_COLUMNS = [
    "cluster", "n_cells", "cell_type", "level", "score", "runner_up", "runner_up_score",
    "margin", "confidence", "assigned", "lineage", "lineage_top", "lineage_score",
    "lineage_runner_up", "lineage_runner_up_score", "lineage_margin", "top_type",
    "top_type_score", "top_type_runner_up", "top_type_runner_up_score", "top_type_margin",
]  # fmt: skip


def _label_cluster(
    mean_scores: pd.Series,
    *,
    lineage_sets: Sequence[str],
    subtypes: Sequence[str],
    lineages: Mapping[str, str],
    min_score: float,
    min_margin: float,
) -> dict[str, Any]:
    """One cluster's label from its mean scores: lineage first, subtype within it, else flat."""
    cuts = {"min_score": min_score, "min_margin": min_margin}
    by_lineage = rank_sets(mean_scores, lineage_sets)
    lineage = by_lineage.top[: -len(LINEAGE_SUFFIX)] if by_lineage.passes(**cuts) else ""
    candidates = [t for t in subtypes if lineages.get(t) == lineage] if lineage else subtypes
    by_type = rank_sets(mean_scores, candidates)
    if by_type.passes(**cuts):
        label, level, decided = by_type.top, "subtype", by_type
        lineage = lineages.get(by_type.top, "") or ""
    elif lineage:
        label, level, decided = lineage_label(lineage), "lineage", by_lineage
        candidates = list(lineage_sets)
    else:
        label, level, decided = UNASSIGNED, UNASSIGNED, by_type
    return {
        "cell_type": label,
        "level": level,
        "score": decided.score,
        "runner_up": decided.runner_up,
        "runner_up_score": decided.runner_up_score,
        "margin": decided.margin,
        "assigned": level != UNASSIGNED,
        "lineage": lineage,
        "lineage_top": by_lineage.top,
        "lineage_score": by_lineage.score,
        "lineage_runner_up": by_lineage.runner_up,
        "lineage_runner_up_score": by_lineage.runner_up_score,
        "lineage_margin": by_lineage.margin,
        "top_type": by_type.top,
        "top_type_score": by_type.score,
        "top_type_runner_up": by_type.runner_up,
        "top_type_runner_up_score": by_type.runner_up_score,
        "top_type_margin": by_type.margin,
        "_candidates": list(candidates),
    }


#: Columns of the per-cluster marker evidence (results/annotate/marker_evidence.tsv).
EVIDENCE_COLUMNS = [
    "cluster", "cell_type", "level", "step", "role", "marker_set", "score", "n_markers",
    "n_measured", "n_detected", "markers_detected", "markers_not_detected",
    "markers_unmeasured", "fraction_detected",
]  # fmt: skip


def marker_evidence(
    adata: ad.AnnData,
    table: pd.DataFrame,
    panel: Mapping[str, Any],
    *,
    cluster_key: str = "leiden",
    min_detected_fraction: float,
    gene_symbols: str | None = None,
    sample_key: str = "sample",
) -> pd.DataFrame:
    """Which markers of the best and runner-up sets each cluster measured and detected.

    For every cluster of `table` (from `annotate_clusters`) and each of its rankings (the
    lineage step and the subtype step), the top set and the runner-up get one row each. A
    marker is *unmeasured* when no cell of the cluster comes from a sample that measured it
    (or the gene is not in the data), *detected* when at least `min_detected_fraction` of
    the cluster's cells that measured it have a non-zero value, and *not detected* otherwise.

    Returns
    -------
    pd.DataFrame
        Columns `EVIDENCE_COLUMNS`: ``step`` is ``lineage`` or ``subtype``, ``role``
        ``top`` or ``runner_up``, ``marker_set`` the set's name; marker lists are
        comma-separated and ``fraction_detected`` lists ``gene=fraction`` for measured ones.
    """
    sets = {n: e["markers"] for n, e in cell_type_entries(panel).items()}
    sets |= {lineage_label(n): e["markers"] for n, e in lineage_entries(panel).items()}
    fractions = _detection_by_cluster(
        adata, sets, cluster_key=cluster_key, gene_symbols=gene_symbols, sample_key=sample_key
    )
    rows = []
    for _, label in table.iterrows():
        for step, prefix in (("lineage", "lineage_"), ("subtype", "top_type_")):
            top = label["lineage_top" if step == "lineage" else "top_type"]
            ranked = {"top": top, "runner_up": label[f"{prefix}runner_up"]}
            for role, name in ranked.items():
                if not isinstance(name, str) or not name:
                    continue
                detected = fractions.loc[str(label["cluster"])].reindex(sets[name])
                rows.append({
                    "cluster": label["cluster"],
                    "cell_type": label["cell_type"],
                    "level": label["level"],
                    "step": step,
                    "role": role,
                    "marker_set": name,
                    "score": label[f"{prefix}score" if role == "top" else f"{prefix}runner_up_score"],
                    **_marker_lists(detected, min_detected_fraction=min_detected_fraction),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)


def _marker_lists(detected: pd.Series, *, min_detected_fraction: float) -> dict[str, Any]:
    """A set's markers split by the cluster's detection fractions (NaN: unmeasured)."""
    measured = detected.dropna()
    hits = measured[measured >= min_detected_fraction]
    return {
        "n_markers": len(detected),
        "n_measured": len(measured),
        "n_detected": len(hits),
        "markers_detected": ",".join(hits.index),
        "markers_not_detected": ",".join(measured.index[measured < min_detected_fraction]),
        "markers_unmeasured": ",".join(detected.index[detected.isna()]),
        "fraction_detected": ",".join(f"{g}={f:.2f}" for g, f in measured.items()),
    }


def _detection_by_cluster(
    adata: ad.AnnData,
    sets: Mapping[str, Sequence[str]],
    *,
    cluster_key: str,
    gene_symbols: str | None,
    sample_key: str,
) -> pd.DataFrame:
    """Clusters x panel genes: fraction of the cluster's measuring cells with a non-zero value.

    NaN where no cell of the cluster measured the gene (or the gene is absent from the data).
    """
    symbols = symbol_index(adata, gene_symbols)
    genes = list(dict.fromkeys(g for markers in sets.values() for g in markers))
    present = [g for g in genes if g in symbols]
    columns = symbols.get_indexer(present)
    block = adata.X[:, columns]
    nonzero = np.asarray((block > 0).todense() if sp.issparse(block) else block > 0, dtype=float)
    measured = np.ones_like(nonzero, dtype=bool)
    names = adata.var_names[columns]
    for mask, unmeasured in measured_groups(adata, sample_key=sample_key):
        if unmeasured:
            measured[np.ix_(mask, names.isin(list(unmeasured)))] = False
    clusters = adata.obs[cluster_key].astype(str).to_numpy()
    hits = pd.DataFrame(np.where(measured, nonzero, 0.0), columns=present).groupby(clusters).sum()
    counts = pd.DataFrame(measured.astype(float), columns=present).groupby(clusters).sum()
    fractions = (hits / counts.where(counts > 0)).reindex(columns=genes)
    return fractions


def _check_scores(adata: ad.AnnData, scores: pd.DataFrame, *, cluster_key: str) -> None:
    """Refuse a missing cluster column, scores without types, or scores lacking cells."""
    require_columns(
        adata.obs.columns,
        [cluster_key],
        table="the clustered atlas's obs",
        fix=f"pass cluster_key= one of {sorted(adata.obs.columns)}",
    )
    if scores.shape[1] == 0:
        raise UserInputError("no cell type was scored; see the scoring report for missing markers")
    missing_cells = adata.obs_names.difference(scores.index)
    if len(missing_cells):
        raise ValueError(
            f"scores lack {len(missing_cells)} of adata's cells (e.g. {missing_cells[0]!r}); "
            "score the same AnnData you annotate"
        )


def _write_labels(
    adata: ad.AnnData, scores: pd.DataFrame, table: pd.DataFrame, *, clusters: pd.Series
) -> None:
    """Each cell's cluster label (categorical: panel order, other labels, unassigned last)."""
    label = dict(zip(table["cluster"], table["cell_type"], strict=True))
    confidence = dict(zip(table["cluster"], table["confidence"], strict=True))
    categories = [c for c in scores.columns if c in set(table["cell_type"])]
    categories += sorted(set(table["cell_type"]) - set(categories) - {UNASSIGNED})
    if (~table["assigned"]).any():
        categories.append(UNASSIGNED)
    adata.obs["cell_type"] = pd.Categorical(clusters.map(label).to_numpy(), categories=categories)
    adata.obs["cell_type_confidence"] = clusters.map(confidence).to_numpy(dtype=np.float64)
    adata.obsm["cell_type_scores"] = scores.copy()


def _cluster_order(column: pd.Series) -> list[str]:
    """Cluster ids in their categorical order, numeric ids sorted as numbers."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        values = [str(c) for c in column.cat.categories]
    else:
        values = sorted(map(str, column.unique()))
    if all(v.isdigit() for v in values):
        values = sorted(values, key=int)
    return values
