"""Figure of the cell-type composition: each replicate's proportion by condition, per cell type."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cordatlas.plotting.base import (
    MAX_WIDTH_IN,
    condition_palette,
    format_pvalue,
    message_figure,
    save,
)
from cordatlas.vocabulary import EVIDENCE, confounded_title

#: Panel size (inches): five panels per row fit 1280 px.
_PANEL_WIDTH, _PANEL_HEIGHT = 2.2, 2.4


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

    Points are replicates (donors), jittered horizontally, in the vocabulary's condition and
    reference colours (:func:`~cordatlas.plotting.base.condition_palette`); the bar (same colour)
    is the group mean of the replicates' proportions. The title gives padj of the donor-level test
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
        message_figure(path, "No cell-type proportions to show\n(no labelled cells).")
        return
    props = proportions.assign(
        cell_type=proportions["cell_type"].astype(str),
        group=proportions[condition_key].astype(str),
    )
    types = list(dict.fromkeys(tests["cell_type"].astype(str)))
    by_type = tests.assign(cell_type=tests["cell_type"].astype(str)).set_index("cell_type")
    palette = condition_palette((condition, reference), (condition, reference))
    n_cols = max(1, min(n_columns, len(types), int(MAX_WIDTH_IN // _PANEL_WIDTH)))
    n_rows = math.ceil(len(types) / n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(_PANEL_WIDTH * n_cols, _PANEL_HEIGHT * n_rows + 0.4),
        squeeze=False,
        sharey=False,
    )
    rng = np.random.default_rng(0)  # jitter only: fixed so figures are reproducible
    for ax, cell_type in zip(axes.flat, types, strict=False):
        _replicate_points(ax, props[props["cell_type"] == cell_type], palette, rng=rng)
        label, weight = _padj_label(by_type.loc[cell_type], alpha)
        ax.set_title(f"{cell_type}\n{label}", fontsize=8, fontweight=weight)
        ax.set_xticks([0, 1], [condition, reference], fontsize=7)
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(bottom=0)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel("% of labelled cells", fontsize=7)
    for ax in axes.flat[len(types) :]:
        ax.set_axis_off()
    transform = str(tests["transform"].iloc[0]) if "transform" in tests.columns else ""
    title = (
        f"Cell-type composition per replicate, {condition} vs {reference}\n(point: one "
        f"replicate; bar: group mean; padj: donor-level {transform} test, BH; bold < {alpha:g})"
    )
    labels = tests[EVIDENCE] if EVIDENCE in tests.columns else []
    fig.suptitle(confounded_title(title, labels), fontsize=9)
    fig.tight_layout()
    save(fig, path)


def _replicate_points(
    ax, sub: pd.DataFrame, palette: dict[str, str], *, rng: np.random.Generator
) -> None:
    """One cell type's replicates, one column per group of `palette` (its order), with means."""
    for x, (group, colour) in enumerate(palette.items()):
        values = sub.loc[sub["group"] == group, "proportion"].dropna().to_numpy(dtype=float)
        if not values.size:
            continue
        ax.scatter(
            x + rng.uniform(-0.12, 0.12, values.size),
            100 * values,
            s=20,
            color=colour,
            edgecolor="black",
            linewidth=0.4,
            zorder=3,
        )
        mean = 100 * float(values.mean())
        ax.plot([x - 0.25, x + 0.25], [mean, mean], color=colour, linewidth=2, zorder=2)


def _padj_label(row: pd.Series, alpha: float) -> tuple[str, str]:
    """Panel title text (padj, or 'not testable'; presence if not in both) and its weight."""
    evidence = str(row.get("evidence", ""))
    padj = float(row["padj"]) if pd.notna(row.get("padj")) else np.nan
    if evidence.startswith("not_testable") or np.isnan(padj):
        label, weight = "not testable", "normal"
    else:
        label = f"padj {format_pvalue(padj)}"
        weight = "bold" if padj < alpha else "normal"
    presence = str(row.get("presence", "both"))
    if presence not in ("both", "nan"):
        label += f"\n{presence}"
    return label, weight
