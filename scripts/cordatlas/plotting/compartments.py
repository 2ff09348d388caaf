"""Figure of the within-lineage comparisons: subtype mix per condition, crude vs compartment-adjusted signature differences."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cordatlas.plotting.base import MAX_WIDTH_IN, cell_type_palette, message_figure, save
from cordatlas.vocabulary import EVIDENCE, NOT_TESTABLE, OTHER_COLOUR, confounded_title

#: Signature rows shown in the right panel (lowest crude padj first).
N_ROWS = 15

#: Colour of the adjusted estimate (the crude one is the vocabulary's neutral grey).
_ADJUSTED_COLOUR = "black"


def plot_compartments(
    subsets: pd.DataFrame,
    adjusted: pd.DataFrame,
    *,
    path: str | Path,
    contrast: Sequence[str],
    alpha: float = 0.05,
    n_rows: int = N_ROWS,
) -> None:
    """Left: each lineage's mean subtype mix in both conditions; right: crude vs adjusted differences.

    Left panel: one pair of stacked bars per lineage with at least two subtypes (condition,
    reference), segments the mean share of each subtype among the lineage's cells, in the
    cell types' fixed colours; subtypes whose share differs at padj < `alpha` are starred in
    the legend. Right panel: for the `n_rows` tested lineage x signature rows with the lowest
    crude padj, the crude difference (grey) and the compartment-standardised one (black) with
    their 95 % CIs; a black point near zero beside a grey one away from it is a difference the
    subtype mix explains.
    """
    condition, reference = (str(c) for c in contrast)
    tested = adjusted[adjusted[EVIDENCE].astype(str) != NOT_TESTABLE] if len(adjusted) else adjusted
    mixes = subsets[subsets["n_subtypes"] >= 2] if len(subsets) else subsets
    if mixes.empty and tested.empty:
        message_figure(path, "No lineage with two or more subtypes in these data:\n"
                       "nothing to compare within compartments.")  # fmt: skip
        return
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(MAX_WIDTH_IN, 5.5), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    _mix_panel(left, mixes, condition, reference, alpha)
    _effect_panel(right, tested, n_rows, alpha)
    labels = [*subsets.get(EVIDENCE, []), *adjusted.get(EVIDENCE, [])]
    fig.suptitle(confounded_title(f"Within-lineage comparison, {condition} vs {reference}",
                                  labels), fontsize=11)  # fmt: skip
    fig.tight_layout()
    save(fig, path)


def _mix_panel(ax, mixes: pd.DataFrame, condition: str, reference: str, alpha: float) -> None:
    if mixes.empty:
        ax.text(0.5, 0.5, "no lineage with two subtypes", ha="center", va="center")
        ax.set_axis_off()
        return
    lineages = list(dict.fromkeys(mixes["lineage"].astype(str)))
    palette = cell_type_palette(mixes["cell_type"].astype(str))
    ticks, names = [], []
    drawn: set[str] = set()
    for i, lineage in enumerate(lineages):
        part = mixes[mixes["lineage"].astype(str) == lineage]
        for j, (group, column) in enumerate(((condition, "mean_proportion_condition"),
                                             (reference, "mean_proportion_reference"))):  # fmt: skip
            x, bottom = i * 3 + j, 0.0
            for row in part.itertuples():
                share = float(getattr(row, column))
                if not np.isfinite(share):
                    continue
                star = " *" if float(np.nan_to_num(row.padj, nan=1.0)) < alpha else ""
                label = f"{row.cell_type}{star}" if row.cell_type not in drawn else None
                drawn.add(row.cell_type)
                ax.bar(x, share, bottom=bottom, color=palette[row.cell_type], label=label,
                       edgecolor="white", linewidth=0.5)  # fmt: skip
                bottom += share
            ticks.append(x)
            names.append(f"{lineage}\n{group}")
    ax.set_xticks(ticks, names, fontsize=7, rotation=90)
    ax.set_ylabel("mean share of the lineage's cells")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Subtype mix per lineage (* padj < {alpha:g})", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _effect_panel(ax, tested: pd.DataFrame, n_rows: int, alpha: float) -> None:
    if tested.empty:
        ax.text(0.5, 0.5, "no lineage x signature could be tested", ha="center", va="center")
        ax.set_axis_off()
        return
    rows = tested.sort_values("padj_crude", na_position="last").head(n_rows).iloc[::-1]
    y = np.arange(len(rows))
    for offset, suffix, colour, name in ((0.15, "crude", OTHER_COLOUR, "crude"),
                                         (-0.15, "adjusted", _ADJUSTED_COLOUR,
                                          "compartment-adjusted")):  # fmt: skip
        value = rows[f"difference_{suffix}"].to_numpy(dtype=float)
        low = rows[f"ci_low_{suffix}"].to_numpy(dtype=float)
        high = rows[f"ci_high_{suffix}"].to_numpy(dtype=float)
        ax.errorbar(value, y + offset, xerr=[value - low, high - value], fmt="o", ms=4,
                    color=colour, capsize=2, lw=1, label=name)  # fmt: skip
    ax.axvline(0, color="0.5", lw=0.8, ls="--")
    labels = [f"{r.lineage}: {r.signature}" + (" [mix]" if r.verdict == "explained_by_compartment_mix"
              else "") for r in rows.itertuples()]  # fmt: skip
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("difference in mean score (95 % CI)")
    ax.set_title(f"Signatures: crude vs standardised to one subtype mix\n[mix]: explained by "
                 f"the mix (alpha {alpha:g})", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="best")
