"""Figures of quality control: one sample's metric distributions, and all samples' kept cells."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cordatlas.plotting.base import save

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


def _threshold_lines(ax, thresholds: pd.DataFrame, metric: str, *, vertical: bool = True) -> None:
    rows = thresholds[thresholds["metric"] == metric]
    for _, row in rows.iterrows():
        for side in ("lower", "upper"):
            value = row[side]
            if value is None or pd.isna(value):
                continue
            draw = ax.axvline if vertical else ax.axhline
            draw(float(value), color="crimson", linestyle="--", linewidth=1.2)
            label = f"{side} {float(value):.3g}"
            if vertical:
                ax.annotate(
                    label,
                    (float(value), 0.97),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=7,
                    color="crimson",
                )


def plot_qc_sample(
    cells: pd.DataFrame, thresholds: pd.DataFrame, *, sample: str, path: str | Path
) -> None:
    """Per-sample QC figure: each metric's distribution with its applied thresholds, and counts vs genes.

    Histograms stack kept (grey) and removed (orange) cells, so a reader sees what each cut takes.
    """
    kept = cells["passed_qc"].astype(bool).to_numpy()
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for ax, (metric, label, log_scale) in zip(axes.flat, QC_PANELS, strict=False):
        values = pd.to_numeric(cells[metric], errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(values)
        if not finite.any():
            ax.text(0.5, 0.5, f"{label}:\nnot computed", ha="center", va="center")
            ax.set_axis_off()
            continue
        data = values[finite]
        if log_scale:
            data = np.maximum(data, 1)
            bins = np.logspace(np.log10(data.min()), np.log10(data.max() + 1), 60)
            ax.set_xscale("log")
        else:
            bins = np.linspace(data.min(), data.max() + 1e-9, 60)
        ax.hist(
            [values[finite & kept], values[finite & ~kept]],
            bins=bins,
            stacked=True,
            color=["0.55", "darkorange"],
            label=[
                f"kept ({int((finite & kept).sum())})",
                f"removed ({int((finite & ~kept).sum())})",
            ],
        )
        _threshold_lines(ax, thresholds, metric)
        ax.set_xlabel(label)
        ax.set_ylabel("cells")
        ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.85))
    ax = axes.flat[-1]
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
    ax.set_xscale("log")
    ax.set_yscale("log")
    _threshold_lines(ax, thresholds, "total_counts")
    _threshold_lines(ax, thresholds, "n_genes_by_counts", vertical=False)
    ax.set_xlabel("total counts")
    ax.set_ylabel("genes detected")
    fig.colorbar(scatter, ax=ax, label="mitochondrial %")
    fig.suptitle(
        f"QC of sample {sample}: {int(kept.sum())} of {len(cells)} cells kept "
        "(dashed lines: thresholds applied)"
    )
    fig.tight_layout()
    save(fig, path)


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
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    save(fig, path)
