"""The one plotting base: backend, save, empty figure, p-values and the palette of every figure.

The non-interactive backend is chosen here and nowhere else. ``cordatlas.plotting`` imports
this module in its ``__init__``, so the backend is set before any figure module imports
pyplot. Every colour that stands for a condition or a cell type comes from
:mod:`cordatlas.vocabulary` through the helpers below, so a condition or a cell type has the
same colour in every figure.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

from cordatlas import vocabulary  # noqa: E402
from cordatlas.vocabulary import format_pvalue  # noqa: E402

__all__ = [
    "DEFAULT_CONTRAST",
    "DPI",
    "MAX_WIDTH_IN",
    "MAX_WIDTH_PX",
    "apply_category_colours",
    "cell_type_palette",
    "condition_handles",
    "condition_order",
    "condition_palette",
    "format_pvalue",
    "message_figure",
    "sample_palettes",
    "save",
]

#: Resolution of every raster figure: modest, because the study report embeds every figure and
#: must stay under its size limit.
DPI = 110
#: Widest figure a reader sees without scrolling: the report is read at 1280 px.
MAX_WIDTH_PX = 1280
#: The same width in inches at :data:`DPI`, less a margin for what ``bbox_inches="tight"`` adds.
MAX_WIDTH_IN = MAX_WIDTH_PX / DPI - 0.3
#: (condition, reference) for figures whose caller does not pass a contrast (the default config).
DEFAULT_CONTRAST = ("cord_blood", "adult")


# --------------------------------------------------------------------------------------------
# Writing figures
# --------------------------------------------------------------------------------------------


def save(fig: Figure, path: str | Path, *, crop: bool = True) -> None:
    """Write `fig` to `path` (format by suffix) at :data:`DPI`, cropped to its content; close it.

    A PNG is written without its (always opaque) alpha channel and with the smallest lossless
    compression: the same pixels in about 15 % fewer bytes, for a report that embeds them all.
    ``crop=False`` writes the whole canvas: for a figure whose caller has already laid out every
    element inside it (``tight_layout``), the crop would only cost a second draw.
    """
    bbox = "tight" if crop else None
    try:
        if Path(path).suffix.lower() != ".png":
            fig.savefig(path, dpi=DPI, bbox_inches=bbox)
            return
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches=bbox)
        buffer.seek(0)
        with Image.open(buffer) as image:
            image.convert("RGB").save(path, format="PNG", optimize=True, dpi=(DPI, DPI))
    finally:
        plt.close(fig)


def message_figure(
    path: str | Path,
    text: str,
    *,
    title: str | None = None,
    title_colour: str = "black",
) -> None:
    """A figure that only says `text` (under `title`, if given), so the promised file exists.

    Used wherever the input is empty or nothing could be tested.
    """
    fig, ax = plt.subplots(figsize=(6, 3.5 if title else 2.5))
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11)
    ax.set_axis_off()
    if title:
        ax.set_title(title, color=title_colour, fontsize=10)
    save(fig, path)


# --------------------------------------------------------------------------------------------
# Palette: conditions
# --------------------------------------------------------------------------------------------


def _contrast(contrast: Sequence[str] | None) -> tuple[str, str]:
    condition, reference = DEFAULT_CONTRAST if contrast is None else contrast
    return str(condition), str(reference)


def condition_order(levels: Iterable[object], contrast: Sequence[str] | None) -> list[str]:
    """The contrast's condition and reference first, then any other level present, sorted."""
    pair = list(_contrast(contrast))
    return pair + sorted({str(level) for level in levels} - set(pair))


def condition_palette(
    levels: Iterable[object], contrast: Sequence[str] | None = None
) -> dict[str, str]:
    """Colour of each condition level: the vocabulary's condition and reference colours, grey else.

    `contrast` defaults to :data:`DEFAULT_CONTRAST`.
    """
    return vocabulary.colours_for_conditions(levels, _contrast(contrast))


def condition_handles(palette: dict[str, str]) -> list[Patch]:
    """Legend patches, one per condition of `palette`, in its order."""
    return [Patch(facecolor=colour, label=level) for level, colour in palette.items()]


# --------------------------------------------------------------------------------------------
# Palette: cell types
# --------------------------------------------------------------------------------------------


def cell_type_palette(names: Iterable[object]) -> dict[str, str]:
    """Fixed colour of each cell-type label (:func:`cordatlas.vocabulary.cell_type_colour`)."""
    return vocabulary.cell_type_colours(names)


# --------------------------------------------------------------------------------------------
# Palette: donors and samples (UMAP panels)
# --------------------------------------------------------------------------------------------

#: Donor base colours: tab10 without its grey (grey means "other" or "missing" in the
#: vocabulary) and with its blue and orange last (they resemble the condition colours of the
#: panel beside), then the darker tab20b / tab20c shades.
_DONOR_BASE = tuple(
    mcolors.to_hex(c)
    for c in (
        [plt.get_cmap("tab10").colors[i] for i in (2, 3, 4, 5, 6, 8, 9, 0, 1)]
        + list(plt.get_cmap("tab20b").colors[0::4])
        + list(plt.get_cmap("tab20c").colors[0::4])
        + list(plt.get_cmap("tab20b").colors[1::4])
    )
)

#: How far a donor's later samples are mixed toward white (the last one reaches this).
_LIGHTEST = 0.6


def _base_colours(n: int) -> list[str]:
    if n <= len(_DONOR_BASE):
        return list(_DONOR_BASE[:n])
    hues = plt.get_cmap("hsv")([i / n for i in range(n)])
    return [mcolors.to_hex(mcolors.to_rgb(c)) for c in hues]


def _lighten(colour: str, fraction: float) -> str:
    """`colour` mixed toward white by `fraction` (same hue, lighter)."""
    rgb = mcolors.to_rgb(colour)
    return mcolors.to_hex(tuple(c + (1.0 - c) * fraction for c in rgb))


def sample_palettes(
    obs: pd.DataFrame, *, donor_key: str = "donor", sample_key: str = "sample"
) -> tuple[dict[str, str], dict[str, str]]:
    """Colours of the UMAP donor and sample panels from one mapping: ``(donors, samples)``.

    Each donor (sorted) gets a base colour; its samples (sorted) get that colour's family: the
    first sample exactly the donor's colour, later ones the same hue mixed toward white. So a
    donor's only sample has the same colour in both panels, and every sample keeps its donor's
    hue. A sample whose cells carry several donors belongs to its most frequent one. Without a
    donor column every sample gets a base colour of its own; without a sample column only
    donors are coloured.
    """
    has_donor, has_sample = donor_key in obs, sample_key in obs
    if not has_donor and not has_sample:
        return {}, {}
    if not has_donor:
        samples = sorted(obs[sample_key].dropna().astype(str).unique())
        return {}, dict(zip(samples, _base_colours(len(samples)), strict=True))
    donors_of_cells = obs[donor_key].astype(str)
    donors = sorted(donors_of_cells.unique())
    donor_colours = dict(zip(donors, _base_colours(len(donors)), strict=True))
    if not has_sample:
        return donor_colours, {}
    pairs = pd.DataFrame({"donor": donors_of_cells, "sample": obs[sample_key].astype(str)})
    counts = pairs.groupby(["sample", "donor"], observed=True).size().reset_index(name="n")
    counts = counts.sort_values(["sample", "n", "donor"], ascending=[True, False, True])
    donor_of = counts.drop_duplicates("sample").set_index("sample")["donor"]
    sample_colours: dict[str, str] = {}
    for donor, samples in donor_of.groupby(donor_of, sort=True):
        ordered = sorted(samples.index)
        for k, sample in enumerate(ordered):
            fraction = _LIGHTEST * k / (len(ordered) - 1) if len(ordered) > 1 else 0.0
            sample_colours[sample] = _lighten(donor_colours[str(donor)], fraction)
    return donor_colours, sample_colours


# --------------------------------------------------------------------------------------------
# Applying a palette to scanpy's categorical colours
# --------------------------------------------------------------------------------------------


def apply_category_colours(adata, key: str, palette: dict[str, str]) -> None:
    """Make ``obs[key]`` categorical and set ``uns[f"{key}_colors"]`` from `palette`.

    scanpy reads ``{key}_colors`` in category order; a category missing from `palette` gets
    :data:`cordatlas.vocabulary.MISSING_COLOUR`.
    """
    column = adata.obs[key]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype("category")
        adata.obs[key] = column
    categories = [str(c) for c in column.cat.categories]
    full = {c: palette.get(c, vocabulary.MISSING_COLOUR) for c in categories}
    adata.uns[f"{key}_colors"] = vocabulary.categorical_colours(categories, palette=full)
