"""Figures of quality control: one sample's metric distributions and species calls, all samples' kept cells."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cordatlas.plotting.base import MAX_WIDTH_IN, message_figure, save

#: Panels of the per-sample QC figure: (obs column, axis label, log scale).
QC_PANELS = (
    ("total_counts", "total counts per cell", True),
    ("n_genes_by_counts", "genes detected per cell", True),
    ("pct_counts_mt", "mitochondrial %", False),
    ("pct_counts_in_top_20_genes", "% counts in top 20 genes", False),
    ("pct_counts_hb", "haemoglobin %", False),
    ("pct_counts_ribo", "ribosomal %", False),
    ("doublet_score", "doublet score", False),
)


#: Font size of every threshold label and legend in the QC figures (points at the saved size).
LABEL_FONTSIZE = 9.5
#: Colour of the threshold lines and labels.
THRESHOLD_COLOUR = "crimson"
#: Sides of a threshold as the labels name them.
_SIDE_TEXT = {"lower": "<", "upper": ">"}


def _bounds(thresholds: pd.DataFrame, metric: str) -> list[tuple[str, float]]:
    """(side, value) of each bound applied to `metric`."""
    rows = thresholds[thresholds["metric"] == metric]
    found = []
    for _, row in rows.iterrows():
        for side in ("lower", "upper"):
            value = row[side]
            if value is not None and not pd.isna(value):
                found.append((side, float(value)))
    return found


def _threshold_lines(ax, thresholds: pd.DataFrame, metric: str, *, vertical: bool = True) -> None:
    draw = ax.axvline if vertical else ax.axhline
    for _, value in _bounds(thresholds, metric):
        draw(value, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.3)


def _number(value: float) -> str:
    """12,987 for counts, 0.182 for shares: a threshold as a reader compares it with the axis."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _threshold_text(thresholds: pd.DataFrame, metric: str) -> str:
    """'removed if < 412 or > 9,870' for the panel title; 'no threshold' when none applies."""
    parts = [f"{_SIDE_TEXT[side]} {_number(value)}" for side, value in _bounds(thresholds, metric)]
    return f"removed if {' or '.join(parts)}" if parts else "no threshold"


def _hb_rich_text(thresholds: pd.DataFrame) -> str:
    from cordatlas.qc.metrics import COUNTS_EXCLUDING_HB

    bounds = _bounds(thresholds, COUNTS_EXCLUDING_HB)
    if not bounds:
        return ""
    return f"\nhb-rich cells: > {_number(bounds[0][1])} outside globin genes"


def _metric_panel(ax, cells, thresholds, metric, label, log_scale, kept) -> bool:
    """One metric's histogram, kept grey and removed orange stacked, bounds dashed and in the title."""
    values = pd.to_numeric(cells[metric], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        ax.text(0.5, 0.5, f"{label}:\nnot computed", ha="center", va="center", fontsize=10)
        ax.set_axis_off()
        return False
    data = values[finite]
    if log_scale:
        values = np.maximum(values, 1)
        data = np.maximum(data, 1)
        bins = np.logspace(np.log10(data.min()), np.log10(data.max() + 1), 50)
        ax.set_xscale("log")
    else:
        bins = np.linspace(data.min(), data.max() + 1e-9, 50)
    ax.hist(
        [values[finite & kept], values[finite & ~kept]],
        bins=bins,
        stacked=True,
        color=["0.55", "darkorange"],
    )
    _threshold_lines(ax, thresholds, metric)
    title = _threshold_text(thresholds, metric)
    if metric == "total_counts":
        title += _hb_rich_text(thresholds)
    if metric == "doublet_score":
        title += f"\n(scored: {int(finite.sum())} cells passing the metric rules)"
    colour = THRESHOLD_COLOUR if _bounds(thresholds, metric) else "0.3"
    ax.set_title(title, fontsize=LABEL_FONTSIZE, color=colour, loc="left")
    ax.set_xlabel(label, fontsize=10)
    ax.set_ylabel("cells", fontsize=10)
    ax.tick_params(labelsize=9)
    return True


def _counts_genes_panel(ax, fig, cells: pd.DataFrame, thresholds: pd.DataFrame) -> None:
    order = np.argsort(cells["pct_counts_mt"].to_numpy())
    scatter = ax.scatter(
        cells["total_counts"].to_numpy()[order],
        cells["n_genes_by_counts"].to_numpy()[order],
        c=cells["pct_counts_mt"].to_numpy()[order],
        s=4,
        cmap="viridis",
        vmin=0,
        vmax=max(20.0, float(np.nanpercentile(cells["pct_counts_mt"], 99))),
    )
    if "hb_rich" in cells and cells["hb_rich"].astype(str).eq("True").any():
        rich = cells["hb_rich"].astype(str).eq("True").to_numpy()
        ax.scatter(
            cells["total_counts"].to_numpy()[rich],
            cells["n_genes_by_counts"].to_numpy()[rich],
            s=14,
            facecolors="none",
            edgecolors="firebrick",
            linewidths=0.7,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _threshold_lines(ax, thresholds, "total_counts")
    _threshold_lines(ax, thresholds, "n_genes_by_counts", vertical=False)
    ax.set_xlabel("total counts", fontsize=10)
    ax.set_ylabel("genes detected", fontsize=10)
    ax.set_title(
        "counts vs genes, coloured by mitochondrial %", fontsize=LABEL_FONTSIZE, loc="left"
    )
    ax.tick_params(labelsize=9)
    bar = fig.colorbar(scatter, ax=ax)
    bar.set_label("mitochondrial %", fontsize=10)


def _legend_panel(ax, cells: pd.DataFrame, kept: np.ndarray) -> None:
    """The legend in a panel of its own, so it never covers data or a threshold label."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor="0.55", label=f"kept ({int(kept.sum())} cells)"),
        Patch(facecolor="darkorange", label=f"removed ({int((~kept).sum())} cells)"),
        Line2D([], [], color=THRESHOLD_COLOUR, linestyle="--", label="threshold applied"),
    ]
    if "hb_rich" in cells:
        n_rich = int(cells["hb_rich"].astype(str).eq("True").sum())
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                markerfacecolor="none",
                markeredgecolor="firebrick",
                label=f"hb-rich cell ({n_rich}; counts vs genes)",
            )
        )
    ax.legend(handles=handles, loc="center", fontsize=10, frameon=False)
    ax.set_axis_off()


def plot_qc_sample(
    cells: pd.DataFrame, thresholds: pd.DataFrame, *, sample: str, path: str | Path
) -> None:
    """Per-sample QC figure: each metric's distribution with its applied thresholds, and counts vs genes.

    Histograms stack kept (grey) and removed (orange) cells, so a reader sees what each cut takes;
    each panel's title states its bounds, and the legend has a panel of its own. The figure fits
    the report's width (:data:`~cordatlas.plotting.base.MAX_WIDTH_IN`), so its labels keep their
    size there.
    """
    kept = cells["passed_qc"].astype(str).eq("True").to_numpy()
    fig, axes = plt.subplots(3, 3, figsize=(MAX_WIDTH_IN, 10.5))
    for ax, (metric, label, log_scale) in zip(axes.flat, QC_PANELS, strict=False):
        _metric_panel(ax, cells, thresholds, metric, label, log_scale, kept)
    _counts_genes_panel(axes.flat[len(QC_PANELS)], fig, cells, thresholds)
    _legend_panel(axes.flat[-1], cells, kept)
    fig.suptitle(
        f"QC of sample {sample}: {int(kept.sum())} of {len(cells)} cells kept", fontsize=12
    )
    fig.tight_layout()
    save(fig, path, crop=False)  # laid out inside the canvas: a crop would cost another draw


#: Colour of each species call in the barnyard figure.
SPECIES_COLOURS = {"human": "royalblue", "mouse": "seagreen", "multiplet": "crimson"}


def plot_species(calls: pd.DataFrame, report: dict, *, sample: str, path: str | Path) -> None:
    """Barnyard figure of a mixed-species sample: counts per species, and the minority share.

    Left: each cell's counts on one species' genes against the other's (log scale), coloured by
    its call. Right: the minority-species share of the cells of each majority species, with the
    multiplet cut of that species dashed and stated in the legend. A single-species file gets a
    figure saying so.
    """
    if not report.get("mixed") or calls.empty:
        message_figure(
            path,
            f"sample {sample}: no species prefix on its genes (single-species file);\n"
            "no species called, no cell removed",
            title="Species calls",
        )
        return
    columns = [c for c in calls.columns if c.startswith("counts_")][:2]
    call = np.where(calls["multiplet"].astype(bool), "multiplet", calls["species"].astype(str))
    fig, (left, right) = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 5.0))
    for name in sorted(set(call)):
        these = call == name
        left.scatter(
            calls[columns[0]].to_numpy()[these] + 1,
            calls[columns[-1]].to_numpy()[these] + 1,
            s=6,
            color=SPECIES_COLOURS.get(name, "0.5"),
            label=f"{name} ({int(these.sum())})",
        )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel(f"{columns[0].removeprefix('counts_')} counts + 1", fontsize=10)
    left.set_ylabel(f"{columns[-1].removeprefix('counts_')} counts + 1", fontsize=10)
    left.set_title("counts per species, by call", fontsize=LABEL_FONTSIZE, loc="left")
    left.legend(fontsize=LABEL_FONTSIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _minority_share_panel(right, calls, report)
    for ax in (left, right):
        ax.tick_params(labelsize=9)
    fig.suptitle(
        f"Species of sample {sample}: {report['n_cells_kept']} single {report['species']} cells "
        f"kept, {report['n_multiplets']} multiplets",
        fontsize=12,
    )
    fig.tight_layout()
    save(fig, path)


def _minority_share_panel(ax, calls: pd.DataFrame, report: dict) -> None:
    bins = np.linspace(0, 0.5, 51)
    for name, shares in calls.groupby("species")["minority_share"]:
        colour = SPECIES_COLOURS.get(str(name), "0.5")
        cut = report["multiplet_cut"].get(str(name))
        label = f"{name} ({len(shares)} cells)"
        ax.hist(shares, bins=bins, histtype="step", linewidth=1.6, color=colour, label=label)
        if cut is not None:
            ax.axvline(
                cut, color=colour, linestyle="--", linewidth=1.3, label=f"{name} cut {cut:.3f}"
            )
    ax.set_yscale("log")
    ax.set_xlabel("minority-species share of a cell's counts", fontsize=10)
    ax.set_ylabel("cells", fontsize=10)
    ax.set_title(
        "by majority species; above the dashed cut: multiplet", fontsize=LABEL_FONTSIZE, loc="left"
    )
    ax.legend(fontsize=LABEL_FONTSIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_qc_overview(cells: pd.DataFrame, *, path: str | Path) -> None:
    """Cells kept and removed per sample, removed cells stacked by their first failed rule.

    A cell failing several rules is counted once, under the first of
    :data:`cordatlas.qc.sample.REASONS` it fails (the per-cell tables list all of them).
    """
    from cordatlas.qc.sample import REASONS

    first = cells["qc_reasons"].fillna("").astype(str).str.split(";").str[0]
    first = first.where(first != "", "kept")
    table = pd.crosstab(cells["sample"], first)
    columns = ["kept"] + [r for r in REASONS if r in table.columns]
    table = table.reindex(columns=columns, fill_value=0)
    colours = ["0.55"] + list(plt.get_cmap("tab10").colors)[: len(columns) - 1]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(table) + 3), 4.5))
    table.plot.bar(stacked=True, ax=ax, color=colours, width=0.8)
    ax.set_ylabel("cells")
    ax.set_xlabel("sample")
    ax.set_title("Cells kept and removed per sample (removed: first failed rule)")
    ax.legend(fontsize=LABEL_FONTSIZE, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    save(fig, path)
