"""Figures of signature contrasts, per-donor scores beside the stress control, and the development axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cordatlas.compare.signature_tests import DEFAULT_CONTROL
from cordatlas.plotting.base import (
    condition_order,
    condition_palette,
    format_pvalue,
    message_figure,
    save,
)
from cordatlas.vocabulary import MISSING_COLOUR

#: Marks drawn on heatmap cells, by concordance (legend text in the figure).
CONCORDANCE_MARKS = {"agree": "+", "disagree": "x", "contested": "?"}


def plot_signature_heatmap(
    results: pd.DataFrame,
    *,
    path: str | Path,
    contrast: Sequence[str] = ("cord_blood", "adult"),
    alpha: float = 0.05,
) -> None:
    """Signature x cell type heatmap of the donor-level difference (condition - reference).

    Colour: difference in score units (symmetric scale, red = higher in the condition). Marks:
    ``+`` the difference agrees with the published expectation (padj < alpha), ``x`` it
    disagrees, ``?`` published sources conflict and the data are significant, ``*`` significant
    without an expectation; grey = not testable. The control set sits in the bottom row, so
    each column shows the biological contrasts above the sample-handling control.
    """
    if results is None or results.empty:
        message_figure(path, "No signature results to show (no cell type had enough donors).")
        return
    condition, reference = contrast
    control_names = list(dict.fromkeys(results.loc[results["role"] == "control", "signature"]))
    signatures = [s for s in dict.fromkeys(results["signature"]) if s not in control_names]
    signatures += control_names
    cell_types = list(dict.fromkeys(results["cell_type"]))
    diff = results.pivot(index="signature", columns="cell_type", values="difference")
    diff = diff.reindex(index=signatures, columns=cell_types)
    padj = results.pivot(index="signature", columns="cell_type", values="padj").reindex(
        index=signatures, columns=cell_types
    )
    conc = results.pivot(index="signature", columns="cell_type", values="concordance").reindex(
        index=signatures, columns=cell_types
    )
    values = diff.to_numpy(dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    vmax = float(np.quantile(finite, 0.98)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.45 * len(cell_types) + 3.5), max(3.0, 0.35 * len(signatures) + 2.2))
    )
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad=MISSING_COLOUR)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    for i, signature in enumerate(signatures):
        for j, cell_type in enumerate(cell_types):
            state = conc.at[signature, cell_type]
            p = padj.at[signature, cell_type]
            mark = CONCORDANCE_MARKS.get(state, "")
            if state == "contested" and not (np.isfinite(p) and p < alpha):
                mark = ""
            if state == "no_expectation" and np.isfinite(p) and p < alpha:
                mark = "*"
            if mark:
                ax.text(j, i, mark, ha="center", va="center", fontsize=9, fontweight="bold")
    ax.set_xticks(range(len(cell_types)), cell_types, rotation=60, ha="right", fontsize=8)
    labels = [f"{s} (control)" if s in control_names else s for s in signatures]
    ax.set_yticks(range(len(signatures)), labels, fontsize=8)
    if control_names:
        ax.axhline(len(signatures) - len(control_names) - 0.5, color="black", linewidth=1.2)
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"score difference, {condition} - {reference}")
    ax.set_title(f"Signature scores, {condition} vs {reference} (donors as units)", fontsize=10)
    fig.text(
        0.01,
        0.01,
        f"+ agrees with the literature, x disagrees (padj < {alpha:g}); ? sources conflict, "
        f"data significant; * significant, no expectation; grey: not testable",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save(fig, path)


def _strip(ax, part: pd.DataFrame, palette: dict[str, str], *, rng: np.random.Generator) -> None:
    """Donor points and condition means, one column per condition of `palette` (its order)."""
    conditions = list(palette)
    for k, condition in enumerate(conditions):
        values = part.loc[part["condition"] == condition, "mean_score"].to_numpy(dtype=float)
        if values.size == 0:
            continue
        x = k + rng.uniform(-0.12, 0.12, values.size)
        colour = palette[condition]
        ax.scatter(x, values, s=28, color=colour, edgecolor="black", linewidth=0.4, zorder=3)
        ax.hlines(values.mean(), k - 0.25, k + 0.25, color=colour, linewidth=2, zorder=2)
    ax.set_xticks(range(len(conditions)), conditions, fontsize=8)
    ax.set_xlim(-0.6, len(conditions) - 0.4)


def _result_text(results: pd.DataFrame | None, cell_type: str, signature: str) -> str:
    if results is None or results.empty:
        return ""
    hit = results[(results["cell_type"] == cell_type) & (results["signature"] == signature)]
    if hit.empty:
        return ""
    row = hit.iloc[0]
    padj = row["padj"]
    return f"diff {row['difference']:+.2g}, padj {format_pvalue(padj)}"


def plot_signature_by_donor(
    summary: pd.DataFrame,
    *,
    signature: str,
    path: str | Path,
    cell_types: Sequence[str] | None = None,
    control: str | None = DEFAULT_CONTROL,
    results: pd.DataFrame | None = None,
    contrast: Sequence[str] = ("cord_blood", "adult"),
) -> None:
    """Per-donor mean scores of `signature` (left) beside the control set (right), per cell type.

    One row per cell type; each point is one donor's mean over its cells of that type, bars
    are the condition means. Titles quote the donor-level difference and padj from `results`
    (`signatures.test_signatures`) when given. Read a biological difference as credible when
    the control beside it does not move the same way.
    """
    if summary is None or summary.empty:
        message_figure(path, "No per-donor signature scores to show.")
        return
    part = summary[summary["signature"] == signature]
    if cell_types is not None:
        part = part[part["cell_type"].isin(set(cell_types))]
    if part.empty:
        message_figure(path, f"No per-donor scores for signature {signature!r}.")
        return
    types = [c for c in dict.fromkeys(part["cell_type"])]
    palette = condition_palette(condition_order(summary["condition"], contrast), contrast)
    show_control = control is not None and control != signature
    n_cols = 2 if show_control else 1
    fig, axes = plt.subplots(
        len(types), n_cols, figsize=(3.4 * n_cols, 2.3 * len(types)), squeeze=False
    )
    rng = np.random.default_rng(0)
    for i, cell_type in enumerate(types):
        panels = [(signature, axes[i][0])]
        if show_control:
            panels.append((control, axes[i][1]))
        for name, ax in panels:
            data = summary[(summary["signature"] == name) & (summary["cell_type"] == cell_type)]
            if data.empty:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{name}: no scores in {cell_type}", ha="center", fontsize=8)
                continue
            _strip(ax, data, palette, rng=rng)
            note = _result_text(results, cell_type, name)
            label = f"{name} (control)" if name == control else name
            ax.set_title(f"{cell_type}: {label}\n{note}", fontsize=8)
            ax.set_ylabel("donor mean score", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    save(fig, path)


def plot_development_axis(
    axis: pd.DataFrame,
    *,
    path: str | Path,
    contrast: Sequence[str] = ("cord_blood", "adult"),
) -> None:
    """Per-donor fetal-to-adult axis by cell type, in the vocabulary's condition colours.

    Relative axis (``relative_to_reference``): 0 = adult mean, units of adult (or pooled)
    donor sd, positive = toward fetal. Reference projection (``reference_projection``):
    0 = adult reference, 1 = fetal reference.
    """
    if axis is None or axis.empty or not np.isfinite(axis["axis_score"].astype(float)).any():
        message_figure(
            path,
            "No development-axis values to show (no cell type with an ontogeny signature and "
            "enough donors).",
        )
        return
    types = list(dict.fromkeys(axis["cell_type"]))
    palette = condition_palette(condition_order(axis["condition"], contrast), contrast)
    conditions = list(palette)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(types) + 2.0), 3.6))
    rng = np.random.default_rng(0)
    width = 0.7 / max(len(conditions), 1)
    for k, condition in enumerate(conditions):
        colour = palette[condition]
        for j, cell_type in enumerate(types):
            values = axis.loc[
                (axis["cell_type"] == cell_type) & (axis["condition"] == condition), "axis_score"
            ].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            centre = j - 0.35 + width * (k + 0.5)
            x = centre + rng.uniform(-width / 4, width / 4, values.size)
            ax.scatter(
                x,
                values,
                s=26,
                color=colour,
                edgecolor="black",
                linewidth=0.4,
                zorder=3,
                label=condition,
            )
            ax.hlines(
                values.mean(), centre - width / 3, centre + width / 3, color=colour, linewidth=2
            )
    methods = set(axis["method"])
    ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
    if "reference_projection" in methods:
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ylabel = "0 = adult reference, 1 = fetal reference"
    else:
        ylabel = "toward fetal (donor sd units: adult, or pooled; see column scale)"
    ax.set_xticks(range(len(types)), types, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title("Fetal-to-adult developmental axis per donor", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    ax.legend(unique.values(), unique.keys(), fontsize=7, frameon=False)
    fig.tight_layout()
    save(fig, path)
