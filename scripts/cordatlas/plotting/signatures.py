"""Figures of signature contrasts, per-donor scores beside the stress control, and the development axis."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from cordatlas.compare.signature_tests import DEFAULT_CONTROL
from cordatlas.plotting.base import (
    MAX_WIDTH_IN,
    condition_handles,
    condition_order,
    condition_palette,
    format_pvalue,
    message_figure,
    save,
)
from cordatlas.vocabulary import EVIDENCE, MISSING_COLOUR, NOT_TESTABLE, confounded_title

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
    without an expectation. Cells that were not testable (too few donors: evidence
    ``not_testable``, or no p-value) are painted grey whatever difference the table holds,
    as the legend says. The control set sits in the bottom row, so each column shows the
    biological contrasts above the sample-handling control.
    """
    if results is None or results.empty:
        message_figure(path, "No signature results to show (no cell type had enough donors).")
        return
    condition, reference = contrast
    control_names = list(dict.fromkeys(results.loc[results["role"] == "control", "signature"]))
    signatures = [s for s in dict.fromkeys(results["signature"]) if s not in control_names]
    signatures += control_names
    cell_types = list(dict.fromkeys(results["cell_type"]))
    grid = _heatmap_grid(results, signatures, cell_types)
    values = np.ma.masked_array(grid["difference"], mask=untestable_cells(grid))
    finite = np.abs(values.compressed())
    finite = finite[np.isfinite(finite)]
    vmax = float(np.quantile(finite, 0.98)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    fig, ax = plt.subplots(
        figsize=(
            min(MAX_WIDTH_IN, max(6.0, 0.45 * len(cell_types) + 4.5)),
            max(3.0, 0.3 * len(signatures) + 2.6),
        )
    )
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad=MISSING_COLOUR)
    image = ax.imshow(values, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    for i, j in np.ndindex(values.shape):
        mark = _mark(grid["concordance"][i, j], grid["padj"][i, j], alpha)
        if mark:
            ax.text(j, i, mark, ha="center", va="center", fontsize=9, fontweight="bold")
    ax.set_xticks(range(len(cell_types)), cell_types, rotation=60, ha="right", fontsize=8)
    labels = [f"{s} (control)" if s in control_names else s for s in signatures]
    ax.set_yticks(range(len(signatures)), labels, fontsize=8)
    if control_names:
        ax.axhline(len(signatures) - len(control_names) - 0.5, color="black", linewidth=1.2)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label(f"score difference\n{condition} - {reference}", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    labels = results[EVIDENCE] if EVIDENCE in results.columns else []
    title = f"Signature scores, {condition} vs {reference} (donors as units)"
    ax.set_title(confounded_title(title, labels), fontsize=10)
    ax.legend(
        handles=[Patch(facecolor=MISSING_COLOUR, edgecolor="0.6", label="not testable")],
        loc="upper left",
        bbox_to_anchor=(1.0, -0.01),
        fontsize=7,
        frameon=False,
    )
    ax.text(
        0.0,
        -0.01,
        f"+ agrees with the literature, x disagrees (padj < {alpha:g});\n"
        "? sources conflict, data significant; * significant, no expectation",
        transform=fig.transFigure,
        fontsize=7,
        va="bottom",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save(fig, path)


def _heatmap_grid(
    results: pd.DataFrame, signatures: list[str], cell_types: list[str]
) -> dict[str, np.ndarray]:
    """Signature x cell-type arrays of the columns the heatmap reads (missing pairs: NaN)."""
    grid = {}
    for column in ("difference", "pvalue", "padj", "concordance", "evidence"):
        if column not in results:
            grid[column] = np.full((len(signatures), len(cell_types)), np.nan, dtype=object)
            continue
        table = results.pivot(index="signature", columns="cell_type", values=column)
        grid[column] = table.reindex(index=signatures, columns=cell_types).to_numpy()
    for column in ("difference", "pvalue", "padj"):
        grid[column] = pd.DataFrame(grid[column]).apply(pd.to_numeric, errors="coerce").to_numpy()
    return grid


def untestable_cells(grid: dict[str, np.ndarray]) -> np.ndarray:
    """Heatmap cells painted grey: no difference or p-value, or marked ``not_testable``."""
    marked = (grid["evidence"].astype(str) == NOT_TESTABLE) | (
        grid["concordance"].astype(str) == "not_testable"
    )
    return marked | ~np.isfinite(grid["difference"]) | ~np.isfinite(grid["pvalue"])


def _mark(state: object, padj: float, alpha: float) -> str:
    """The mark drawn on one heatmap cell (see :data:`CONCORDANCE_MARKS`)."""
    significant = bool(np.isfinite(padj) and padj < alpha)
    if state == "no_expectation":
        return "*" if significant else ""
    if state == "contested" and not significant:
        return ""
    return CONCORDANCE_MARKS.get(str(state), "")


#: Facet size of the per-donor figures (inches) and the most facets per row within 1280 px.
_FACET_WIDTH, _FACET_HEIGHT = 2.2, 2.0
_MAX_FACETS_PER_ROW = max(1, int(MAX_WIDTH_IN // _FACET_WIDTH))
#: x position of the control's strips in a facet (the signature's start at 0).
_CONTROL_OFFSET = 3.0


def centred_scores(part: pd.DataFrame, reference: str) -> tuple[np.ndarray, bool]:
    """Donor scores minus the `reference` donors' mean (minus all donors' mean without any).

    Centring puts the reference at 0 and the condition's bar at the difference, in the
    score's own units, so a signature and its control share one y-axis and the reader compares
    their shifts directly. Returns the centred values and whether the reference was the centre.
    """
    values = part["mean_score"].to_numpy(dtype=float)
    of_reference = (part["condition"].astype(str) == reference).to_numpy() & np.isfinite(values)
    if of_reference.any():
        return values - values[of_reference].mean(), True
    finite = np.isfinite(values)
    return values - (values[finite].mean() if finite.any() else 0.0), False


def _strip(
    ax,
    part: pd.DataFrame,
    palette: dict[str, str],
    reference: str,
    *,
    rng: np.random.Generator,
    start: float,
) -> bool:
    """Centred donor points and condition means at x = `start` + k, one column per condition."""
    centred, on_reference = centred_scores(part, reference)
    conditions = part["condition"].astype(str).to_numpy()
    for k, condition in enumerate(palette):
        values = centred[(conditions == condition) & np.isfinite(centred)]
        if values.size == 0:
            continue
        x = start + k + rng.uniform(-0.12, 0.12, values.size)
        colour = palette[condition]
        ax.scatter(x, values, s=22, color=colour, edgecolor="black", linewidth=0.4, zorder=3)
        mean = values.mean()
        ax.hlines(mean, start + k - 0.3, start + k + 0.3, color=colour, linewidth=2, zorder=2)
    return on_reference


def result_text(results: pd.DataFrame | None, cell_type: str, signature: str) -> str:
    """``"diff +0.12, padj 3.0e-03"`` of one test, ``"not testable"`` where it was not tested.

    Empty when `results` has no row for the pair. A difference that is missing (too few
    donors) is never written as a number.
    """
    if results is None or results.empty:
        return ""
    hit = results[(results["cell_type"] == cell_type) & (results["signature"] == signature)]
    if hit.empty:
        return ""
    row = hit.iloc[0]
    difference = pd.to_numeric(pd.Series([row.get("difference")]), errors="coerce").iloc[0]
    pvalue = pd.to_numeric(pd.Series([row.get("pvalue", row.get("padj"))]), errors="coerce").iloc[0]
    untestable = (
        str(row.get("evidence", "")) == NOT_TESTABLE
        or str(row.get("concordance", "")) == "not_testable"
    )
    if untestable or not (np.isfinite(difference) and np.isfinite(pvalue)):
        return "not testable"
    text = f"diff {difference:+.2g}, padj {format_pvalue(row['padj'])}"
    verdict = {"agree": "agrees", "disagree": "disagrees"}.get(str(row.get("concordance")))
    return f"{text}, {verdict}" if verdict else text


def _facet(
    ax,
    data: pd.DataFrame,
    control_data: pd.DataFrame | None,
    palette: dict[str, str],
    reference: str,
    *,
    rng: np.random.Generator,
) -> bool:
    """One cell type: the signature's donors (left), the control's (right, shaded).

    Returns whether every strip was centred on the reference donors.
    """
    on_reference = _strip(ax, data, palette, reference, rng=rng, start=0.0)
    n = len(palette)
    # alone, the strip's conditions are named; beside the control, the two strips are
    ticks, labels = list(range(n)), [_short(c, 10) for c in palette]
    ax.axhline(0.0, color="0.5", linewidth=0.6, linestyle="--", zorder=1)
    right = n - 0.4
    if control_data is not None:
        ax.axvspan(_CONTROL_OFFSET - 0.5, _CONTROL_OFFSET + n - 0.5, color="0.93", zorder=0)
        if not control_data.empty:
            on_reference &= _strip(
                ax, control_data, palette, reference, rng=rng, start=_CONTROL_OFFSET
            )
        ticks, labels = [(n - 1) / 2, _CONTROL_OFFSET + (n - 1) / 2], ["signature", "control"]
        right = _CONTROL_OFFSET + n - 0.4
    ax.set_xlim(-0.6, right)
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.tick_params(axis="x", length=0)
    ax.tick_params(axis="y", labelsize=7)
    return on_reference


def _facet_title(
    results: pd.DataFrame | None, cell_type: str, signature: str, control: str | None
) -> str:
    lines = [cell_type]
    text = result_text(results, cell_type, signature)
    if text:
        lines.append(text)
    if control is not None:
        control_text = result_text(results, cell_type, control)
        if control_text:
            lines.append(f"control: {control_text}")
    return "\n".join(lines)


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
    """Per-donor mean scores of `signature`, one facet per cell type, the control set beside.

    Facets wrap across rows so the figure stays within 1280 px at :data:`DPI`. In each facet
    the left strip is the signature, the shaded right strip the control set (when `control`
    is given and is not `signature`); each point is one donor's mean over its cells of that
    type minus the reference donors' mean (:func:`centred_scores`), bars are the condition
    means, in the vocabulary's condition colours. Facet titles quote the donor-level
    difference and padj from `results` (`signature_tests.signature_tests`), for the control
    too, or say "not testable". Read a biological difference as credible when the control
    beside it does not move the same way.
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
    types = list(dict.fromkeys(part["cell_type"]))
    condition, reference = (str(c) for c in contrast)
    palette = condition_palette(condition_order(summary["condition"], contrast), contrast)
    shown_control = control if control is not None and control != signature else None
    n_cols = min(_MAX_FACETS_PER_ROW, len(types))
    n_rows = math.ceil(len(types) / n_cols)
    height = _FACET_HEIGHT * n_rows + 0.8
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(_FACET_WIDTH * n_cols, height), squeeze=False)
    rng = np.random.default_rng(0)  # jitter only: fixed so figures are reproducible
    pooled: list[str] = []
    for ax, cell_type in zip(axes.flat, types, strict=False):
        control_data = None
        if shown_control is not None:
            chosen = (summary["signature"] == shown_control) & (summary["cell_type"] == cell_type)
            control_data = summary[chosen]
        data = part[part["cell_type"] == cell_type]
        if not _facet(ax, data, control_data, palette, reference, rng=rng):
            pooled.append(cell_type)
        ax.set_title(_facet_title(results, cell_type, signature, shown_control), fontsize=7)
    for ax in axes.flat[len(types) :]:
        ax.set_axis_off()
    for row in axes:
        row[0].set_ylabel(f"score - {_short(reference)} mean", fontsize=7)
    labels = results[EVIDENCE] if results is not None and EVIDENCE in results.columns else []
    _donor_figure_header(fig, signature, shown_control, palette, reference, pooled, labels)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.65 / height))
    save(fig, path, crop=False)  # laid out inside the canvas: a crop would cost another draw


def _short(level: str, width: int = 14) -> str:
    return level if len(level) <= width else f"{level[: width - 1]}."


def _donor_figure_header(
    fig,
    signature: str,
    control: str | None,
    palette: dict[str, str],
    reference: str,
    pooled: list[str],
    labels: object = (),
) -> None:
    """Title (tagged when `labels`, the rows' evidence, say confounded), how to read, legend."""
    how = [
        f"point: one donor's mean score minus the {reference} donors' mean; bar: condition mean;"
        " diff = condition - reference, donors as units"
    ]
    if control is not None:
        how.insert(0, f"left: {signature}; shaded right: control set {control}")
    if pooled:
        how.append(f"no {reference} donor in {', '.join(pooled)}: centred on all donors' mean")
    height = fig.get_figheight()
    fig.suptitle(
        confounded_title(f"{signature}: per-donor score in each cell type", labels),
        fontsize=10,
        y=1 - 0.05 / height,
    )
    fig.text(
        0.01,
        1 - 0.3 / height,
        "\n".join(textwrap.fill(line, 130) for line in how),
        ha="left",
        va="top",
        fontsize=7,
    )
    fig.legend(
        handles=condition_handles(palette),
        loc="upper right",
        bbox_to_anchor=(0.995, 1 - 0.25 / height),
        fontsize=7,
        frameon=False,
    )


def plot_development_axis(
    axis: pd.DataFrame,
    *,
    path: str | Path,
    contrast: Sequence[str] = ("cord_blood", "adult"),
) -> None:
    """Per-donor fetal-to-adult axis by cell type, in the vocabulary's condition colours.

    Reference projection (``reference_projection``): 0 = adult reference, 1 = fetal
    reference; without values the figure says why (the table's first note). The y-label is two short lines and the method's
    definition sits under the title, so nothing is cut at the figure's edge.
    """
    if axis is None or axis.empty or not np.isfinite(axis["axis_score"].astype(float)).any():
        reason = "no cell type with an ontogeny signature and enough donors"
        notes = [] if axis is None or "note" not in axis else axis["note"].dropna().astype(str)
        if len(notes):
            reason = notes.iloc[0].split(":")[0]  # the table's own reason, e.g. no reference
        message_figure(path, f"No development-axis values to show ({reason}).")
        return
    types = list(dict.fromkeys(axis["cell_type"]))
    palette = condition_palette(condition_order(axis["condition"], contrast), contrast)
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH_IN, max(5.0, 0.8 * len(types) + 2.5)), 4.4))
    _axis_points(ax, axis, types, palette)
    ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
    if "reference_projection" in set(axis["method"]):
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ylabel = "position on the axis\n(0 adult, 1 fetal)"
        how = "reference projection: 0 = adult reference (dashed), 1 = fetal reference (dotted)"
    else:
        ylabel = "toward fetal\n(reference-donor sd)"
        how = (
            "relative axis: 0 = reference mean (dashed); unit = reference donors' sd "
            "(pooled sd where that is too small; column 'scale')"
        )
    ax.set_xticks(range(len(types)), types, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(types) - 0.4)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Fetal-to-adult developmental axis per donor", fontsize=10, pad=30)
    ax.text(0.5, 1.02, textwrap.fill(how, 85), transform=ax.transAxes, ha="center", fontsize=7)
    _mark_empty_types(ax, axis, types)
    present = [c for c in palette if c in set(axis["condition"].astype(str))]
    ax.legend(
        handles=condition_handles({c: palette[c] for c in present}),
        fontsize=7,
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    fig.tight_layout()
    save(fig, path)


def _axis_points(ax, axis: pd.DataFrame, types: list[str], palette: dict[str, str]) -> None:
    """Each donor's axis score (points) and the condition means (bars), dodged by condition."""
    rng = np.random.default_rng(0)  # jitter only: fixed so figures are reproducible
    width = 0.7 / max(len(palette), 1)
    for k, (condition, colour) in enumerate(palette.items()):
        for j, cell_type in enumerate(types):
            chosen = (axis["cell_type"] == cell_type) & (axis["condition"] == condition)
            values = axis.loc[chosen, "axis_score"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            centre = j - 0.35 + width * (k + 0.5)
            x = centre + rng.uniform(-width / 4, width / 4, values.size)
            ax.scatter(x, values, s=26, color=colour, edgecolor="black", linewidth=0.4, zorder=3)
            ax.hlines(
                values.mean(), centre - width / 3, centre + width / 3, color=colour, linewidth=2
            )


def _mark_empty_types(ax, axis: pd.DataFrame, types: list[str]) -> None:
    """Write "no values" (and the table's reason) where a cell type has no finite axis score."""
    scores = pd.to_numeric(axis["axis_score"], errors="coerce")
    for j, cell_type in enumerate(types):
        of_type = (axis["cell_type"] == cell_type).to_numpy()
        if np.isfinite(scores[of_type]).any():
            continue
        reasons = (
            sorted(set(axis.loc[of_type, "scale"].dropna().astype(str))) if "scale" in axis else []
        )
        text = "no values" + (f"\n({', '.join(reasons)})" if reasons else "")
        ax.text(
            j,
            0.5,
            text,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="center",
            fontsize=7,
            color="0.35",
            rotation=90,
        )
