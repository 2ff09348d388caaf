"""The shared vocabulary of every results table and figure: evidence labels, column names, palette.

Light by design (standard library only): the Snakefile imports it while parsing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

# --------------------------------------------------------------------------------------------
# Names that become file names or wildcards
# --------------------------------------------------------------------------------------------

#: Sample ids, donor ids, cell-type slugs and gene-set names: safe in paths and wildcards.
#: The JSON schemas and the ``cell_type`` wildcard constraint use the same pattern.
SAFE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
SAFE_NAME = re.compile(rf"^{SAFE_NAME_PATTERN}$")

# --------------------------------------------------------------------------------------------
# Evidence: how far a row of a results table can be trusted (a closed set)
# --------------------------------------------------------------------------------------------

#: Tested with donors as the unit of replication (at least the configured donors per group).
DONOR_LEVEL = "donor_level"
#: Tested with cells as the unit (fewer donors than the minimum): a ranking, never a finding.
EXPLORATORY = "exploratory_no_replication"
#: Condition is aliased with study or technology: the difference cannot be told from it.
CONFOUNDED = "confounded"
#: Not enough donors or genes to test at all; the ``note`` column says why.
NOT_TESTABLE = "not_testable"

#: Every value the ``evidence`` column of any results table may take.
EVIDENCE_LABELS = (DONOR_LEVEL, EXPLORATORY, CONFOUNDED, NOT_TESTABLE)

#: What a figure's title adds for each label other than donor_level, so a figure read alone
#: still says how far it can be trusted.
EVIDENCE_TITLE_TAGS = {
    EXPLORATORY: "exploratory: cell-level ranking, not findings",
    CONFOUNDED: "confounded: condition aliased with a technical factor",
    NOT_TESTABLE: "not testable",
}


def confounded_title(title: str, labels: Iterable[object]) -> str:
    """`title` with the confounded tag when any row of a multi-cell-type figure is confounded.

    Aliasing is study-wide (:func:`cordatlas.design.mark_confounded` labels every row), so one
    confounded row means the whole figure compares technology or study as much as condition.
    """
    if CONFOUNDED in {str(v) for v in labels}:
        return f"{title}\n[{EVIDENCE_TITLE_TAGS[CONFOUNDED]}: not separable from condition]"
    return title


def evidence_title(title: str, labels: Iterable[object]) -> str:
    """`title` with the evidence tag of a figure's rows (the weakest label when they differ)."""
    present = {str(v) for v in labels}
    for label in (CONFOUNDED, EXPLORATORY, NOT_TESTABLE):
        if label in present:
            return f"{title}\n[{EVIDENCE_TITLE_TAGS[label]}]"
    return title


# --------------------------------------------------------------------------------------------
# Column names shared by the results tables
# --------------------------------------------------------------------------------------------

CELL_TYPE = "cell_type"
EVIDENCE = "evidence"
#: Free text for a reader (why not tested, what the control did); never parsed.
NOTE = "note"
PVALUE = "pvalue"
PADJ = "padj"
METHOD = "method"
#: True on a tested row whose smaller group has at most comparison.low_power_max_replicates donors.
LOW_POWER = "low_power"


def check_evidence(values: Iterable[object], *, table: str) -> None:
    """Raise ValueError when a table's ``evidence`` column holds a label outside the vocabulary."""
    unknown = sorted({str(v) for v in values} - set(EVIDENCE_LABELS))
    if unknown:
        raise ValueError(
            f"{table}: evidence values {unknown} are not in the vocabulary {list(EVIDENCE_LABELS)}"
        )


# --------------------------------------------------------------------------------------------
# Palette: one colour per condition and per cell type, in every figure
# --------------------------------------------------------------------------------------------

#: The contrast's condition (cord blood by default) and reference (adult) in every figure
#: (Okabe & Ito's colour-blind-safe vermillion and blue).
CONDITION_COLOUR = "#D55E00"
REFERENCE_COLOUR = "#0072B2"
#: Anything that is neither (a third condition in the sheet, missing values).
OTHER_COLOUR = "#999999"
#: Cells or rows without a label (``unassigned``) and untestable heatmap cells.
MISSING_COLOUR = "#D9D9D9"

#: Fixed colours for the marker panel's cell types, so one type keeps its colour everywhere.
CELL_TYPE_COLOURS: dict[str, str] = {
    "HSC_MPP": "#8C510A",
    "lymphoid_progenitor": "#BF812D",
    "myeloid_progenitor": "#DFC27D",
    "erythroid_progenitor": "#A50026",
    "erythroid": "#D73027",
    "megakaryocyte": "#F46D43",
    "CD14_monocyte": "#1B9E77",
    "CD16_monocyte": "#66C2A5",
    "cDC": "#006D2C",
    "pDC": "#74C476",
    "B_naive": "#6A3D9A",
    "B_memory": "#CAB2D6",
    "plasma_cell": "#3F007D",
    "CD4_naive": "#08519C",
    "CD4_memory": "#6BAED6",
    "Treg": "#C6DBEF",
    "CD8_naive": "#E7298A",
    "CD8_effector": "#F1B6DA",
    "MAIT": "#FDAE61",
    "gdT": "#FEE090",
    "NK_CD56bright": "#35978F",
    "NK_CD56dim": "#80CDC1",
    "ILC": "#01665E",
}

#: Colours for labels outside the panel (user entries, ``{lineage}_lineage``), chosen by a
#: stable hash of the name so they do not change between runs or figures.
_EXTRA_COLOURS = (
    "#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948",
    "#B07AA1", "#FF9DA7", "#9C755F", "#BAB0AC", "#17BECF", "#BCBD22",
)  # fmt: skip

UNASSIGNED = "unassigned"


def condition_colours(contrast: Sequence[str]) -> dict[str, str]:
    """Colours of the contrast's condition and reference, e.g. ``{"cord_blood": ..., "adult": ...}``."""
    condition, reference = contrast
    return {str(condition): CONDITION_COLOUR, str(reference): REFERENCE_COLOUR}


def colours_for_conditions(levels: Iterable[object], contrast: Sequence[str]) -> dict[str, str]:
    """A colour for every condition level present (the contrast's two, grey for any other)."""
    fixed = condition_colours(contrast)
    return {str(level): fixed.get(str(level), OTHER_COLOUR) for level in levels}


def cell_type_colour(name: str) -> str:
    """The colour of one cell-type label (fixed for panel types, hashed for the rest)."""
    if name in CELL_TYPE_COLOURS:
        return CELL_TYPE_COLOURS[name]
    if name == UNASSIGNED:
        return MISSING_COLOUR
    digest = hashlib.sha256(name.encode()).digest()
    return _EXTRA_COLOURS[digest[0] % len(_EXTRA_COLOURS)]


def cell_type_colours(names: Iterable[object]) -> dict[str, str]:
    """Colours for a set of cell-type labels, keyed by label."""
    return {str(n): cell_type_colour(str(n)) for n in names}


def categorical_colours(levels: Sequence[object], *, palette: Mapping[str, str]) -> list[str]:
    """The palette's colours in the order of `levels` (for scanpy's ``{key}_colors``)."""
    return [palette[str(level)] for level in levels]


def format_pvalue(value: float | None) -> str:
    """A p-value as every table note and figure writes it: 2 significant digits, 'NA' if absent."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return "NA"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"
