"""Figures of the cord-vs-adult comparison (composition, gene-set enrichment): matplotlib, files only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Colours of the two groups: condition, reference.
GROUP_COLOURS = ("#c0392b", "#2c7fb8")


def _message_figure(text: str, *, path: str | Path, size: tuple[float, float] = (6, 3)) -> None:
    """A figure that only says `text` (empty input still yields the promised file)."""
    fig, ax = plt.subplots(figsize=size)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11)
    ax.set_axis_off()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _format_p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"


def plot_composition(
    proportions: pd.DataFrame,
    tests: pd.DataFrame,
    *,
    path: str | Path,
    contrast: Sequence[str],
    condition_key: str = "condition",
    alpha: float = 0.05,
    n_columns: int = 6,
) -> None:
    """One panel per cell type: each replicate's proportion by condition, group means, padj.

    Points are replicates (donors), jittered horizontally; the black bar is the group mean of
    the replicates' proportions. The title gives padj of the donor-level test
    (:func:`cordatlas.compare.composition.test_composition`), bold when below `alpha`, or says the type
    was not testable. Panels follow the order of `tests`.

    Parameters
    ----------
    proportions
        :func:`cordatlas.compare.composition.replicate_proportions` output.
    tests
        :func:`cordatlas.compare.composition.test_composition` output.
    path
        Output file (PNG or SVG by suffix).
    contrast
        (condition, reference): the two groups shown, in this order.
    condition_key
        Condition column of `proportions`.
    alpha
        Significance level marking padj in bold.
    n_columns
        Panels per row.
    """
    condition, reference = (str(c) for c in contrast)
    if proportions.empty or tests.empty:
        _message_figure("No cell-type proportions to show\n(no labelled cells).", path=path)
        return
    props = proportions.assign(
        cell_type=proportions["cell_type"].astype(str),
        group=proportions[condition_key].astype(str),
    )
    types = list(dict.fromkeys(tests["cell_type"].astype(str)))
    by_type = tests.assign(cell_type=tests["cell_type"].astype(str)).set_index("cell_type")
    n_cols = max(1, min(n_columns, len(types)))
    n_rows = math.ceil(len(types) / n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.3 * n_cols, 2.6 * n_rows), squeeze=False, sharey=False
    )
    rng = np.random.default_rng(0)  # jitter only: fixed so figures are reproducible
    for ax, cell_type in zip(axes.flat, types, strict=False):
        sub = props[props["cell_type"] == cell_type]
        for x, (group, colour) in enumerate(
            zip((condition, reference), GROUP_COLOURS, strict=True)
        ):
            values = sub.loc[sub["group"] == group, "proportion"].dropna().to_numpy(dtype=float)
            if values.size:
                ax.scatter(
                    x + rng.uniform(-0.12, 0.12, values.size),
                    100 * values,
                    s=18,
                    color=colour,
                    alpha=0.8,
                    edgecolor="none",
                )
                mean = 100 * float(values.mean())
                ax.plot([x - 0.25, x + 0.25], [mean, mean], color="black", linewidth=1.6)
        row = by_type.loc[cell_type]
        evidence = str(row.get("evidence", ""))
        padj = float(row["padj"]) if pd.notna(row.get("padj")) else np.nan
        if evidence.startswith("not_testable") or np.isnan(padj):
            label, weight = "not testable", "normal"
        else:
            label = f"padj {_format_p(padj)}"
            weight = "bold" if padj < alpha else "normal"
        presence = str(row.get("presence", "both"))
        if presence not in ("both", "nan"):
            label += f"\n{presence}"
        ax.set_title(f"{cell_type}\n{label}", fontsize=8, fontweight=weight)
        ax.set_xticks([0, 1], [condition, reference], fontsize=7)
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(bottom=0)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel("% of labelled cells", fontsize=7)
    for ax in axes.flat[len(types) :]:
        ax.set_axis_off()
    transform = str(tests["transform"].iloc[0]) if "transform" in tests.columns else ""
    fig.suptitle(
        f"Cell-type composition per replicate, {condition} vs {reference} (bar: group mean; "
        f"padj: donor-level {transform} test, BH; bold < {alpha})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_enrichment(
    results: pd.DataFrame,
    *,
    path: str | Path,
    alpha: float = 0.05,
    max_sets: int = 40,
) -> None:
    """Dot plot of gene sets x cell types: colour = auc - 0.5 (signed), size = -log10 padj.

    Red: the set's genes rank higher in the condition, blue: lower; a black ring marks
    padj < `alpha`; cells left blank were not tested (size limits, cell type without a
    ranking). When more than `max_sets` sets were tested, the `max_sets` with the smallest padj
    in any cell type are shown (the title says so).

    Parameters
    ----------
    results
        Concatenated :func:`cordatlas.compare.enrichment.rank_enrichment` tables (any cell types).
    path
        Output file (PNG or SVG by suffix).
    alpha
        Significance level for the ring.
    max_sets
        Most sets shown.
    """
    tested = results
    if not results.empty:
        tested = results[pd.to_numeric(results["pvalue"], errors="coerce").notna()]
    if tested.empty:
        _message_figure(
            "No gene sets tested\n(no ranking, or no set within the size limits).", path=path
        )
        return
    tested = tested.assign(
        cell_type=tested["cell_type"].astype(str),
        gene_set=tested["gene_set"].astype(str),
        padj=pd.to_numeric(tested["padj"], errors="coerce"),
        auc=pd.to_numeric(tested["auc"], errors="coerce"),
    )
    best = tested.groupby("gene_set")["padj"].min().sort_values(kind="stable")
    n_sets = len(best)
    shown = best.index[:max_sets].tolist()
    tested = tested[tested["gene_set"].isin(shown)]
    sets = shown[::-1]  # smallest padj at the top
    types = sorted(tested["cell_type"].unique())
    x = tested["cell_type"].map({t: i for i, t in enumerate(types)}).to_numpy()
    y = tested["gene_set"].map({s: i for i, s in enumerate(sets)}).to_numpy()
    effect = (tested["auc"] - 0.5).to_numpy(dtype=float)
    padj = tested["padj"].to_numpy(dtype=float)
    size = 12 + 40 * np.clip(-np.log10(np.clip(padj, 1e-10, 1)), 0, 10) / 2
    limit = max(0.05, float(np.nanmax(np.abs(effect))))
    fig, ax = plt.subplots(
        figsize=(max(4.5, 0.6 * len(types) + 4), max(3.0, 0.28 * len(sets) + 1.8))
    )
    dots = ax.scatter(
        x, y, s=size, c=effect, cmap="RdBu_r", vmin=-limit, vmax=limit, edgecolor="none"
    )
    significant = padj < alpha
    ax.scatter(
        x[significant],
        y[significant],
        s=size[significant] + 25,
        facecolor="none",
        edgecolor="black",
        linewidth=1.0,
    )
    exploratory = set()
    if "evidence" in tested.columns:
        exploratory = set(
            tested.loc[tested["evidence"].astype(str) != "donor_level", "cell_type"].astype(str)
        )
    labels = [f"{t} (EXPLORATORY)" if t in exploratory else t for t in types]
    ax.set_xticks(range(len(types)), labels, rotation=60, ha="right", fontsize=8)
    for tick, cell_type in zip(ax.get_xticklabels(), types, strict=True):
        if cell_type in exploratory:
            tick.set_color("darkred")
    ax.set_yticks(range(len(sets)), sets, fontsize=8)
    ax.set_xlim(-0.7, len(types) - 0.3)
    ax.set_ylim(-0.7, len(sets) - 0.3)
    bar = fig.colorbar(dots, ax=ax, shrink=0.8)
    bar.set_label("AUC - 0.5 (red: higher in condition)", fontsize=8)
    title = f"Gene-set enrichment (ring: padj < {alpha}; size: -log10 padj)"
    if exploratory:
        title += "\nEXPLORATORY (red labels): cell-level DE, no biological replication"
    if n_sets > len(shown):
        title += f"\n{len(shown)} of {n_sets} tested sets shown (smallest padj)"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
