"""What the realistic simulator adds to the simple one: pure array functions, seeded by the caller.

:mod:`cordatlas.demo.simulate` calls these when ``realism="realistic"``: marker programmes that
differ from the annotation panel, cell-type-specific donor effects, a soup with lysed red
cells' haemoglobin, a naive-to-memory continuum, stressed donors. The constants they read are
in :mod:`cordatlas.demo.biology`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cordatlas.demo.biology import (
    CELL_TYPES,
    CONTINUUM_BETA,
    CONTINUUM_PAIRS,
    CONTINUUM_STEPS,
    HAEMOGLOBIN,
    REALISTIC_DONOR_TYPE_LOG_SD,
    SOUP_HB_MAX,
    SOUP_HB_PER_ERYTHROID,
    STRESS_DONOR_SHARE,
    STRESS_LOG2FC_RANGE,
    UNNAMED_MARKER_CP10K,
    UNNAMED_MARKERS_PER_TYPE,
    WEAK_PANEL_MARKER_CP10K,
    WEAK_PANEL_MARKERS,
)
from cordatlas.errors import UserInputError

__all__ = [
    "STRESS_MODES",
    "adjust_markers",
    "continuum_library_medians",
    "continuum_rows",
    "continuum_steps",
    "donor_type_effects",
    "soup_profile",
    "stressed_donor_log2fc",
]

#: How stress is planted: in a share of each condition's donors, or in every donor of the
#: contrast's condition and none of its reference.
STRESS_MODES: tuple[str, ...] = ("independent", "with_condition")

_ERYTHROID_TYPES = ("erythroid", "erythroid_progenitor")


def adjust_markers(
    genes: pd.DataFrame, profiles: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Profiles whose markers differ from the panel, and each type's unnamed (filler) markers.

    Panel markers listed in ``WEAK_PANEL_MARKERS`` fall to ``WEAK_PANEL_MARKER_CP10K`` in their
    type; ``UNNAMED_MARKERS_PER_TYPE`` filler genes per type (none shared between types) rise
    to a level drawn from ``UNNAMED_MARKER_CP10K``, chosen among the less expressed half of the
    fillers. Rows are renormalised to sum to one.
    """
    names = genes["gene"].tolist()
    index = {g: i for i, g in enumerate(names)}
    filler = np.flatnonzero(genes["category"].to_numpy() == "filler")
    # from the quieter half of the fillers, so that the marker is specific to its type
    n_needed = len(CELL_TYPES) * UNNAMED_MARKERS_PER_TYPE
    if filler.size < n_needed:
        raise UserInputError(
            f"n_genes={len(names)} leaves {filler.size} filler genes; the realistic simulator "
            f"needs {n_needed} for its unnamed markers: raise n_genes by "
            f"{n_needed - filler.size} or set realism to simple."
        )
    quiet = filler[np.argsort(profiles[:, filler].max(axis=0), kind="stable")]
    pool = quiet[: max(n_needed, quiet.size // 2)]
    chosen = rng.choice(pool, size=(len(CELL_TYPES), UNNAMED_MARKERS_PER_TYPE), replace=False)
    out = profiles.copy()
    unnamed: dict[str, list[str]] = {}
    for t, cell_type in enumerate(CELL_TYPES):
        for gene in WEAK_PANEL_MARKERS.get(cell_type, ()):
            out[t, index[gene]] = WEAK_PANEL_MARKER_CP10K / 1e4
        levels = rng.uniform(*UNNAMED_MARKER_CP10K, size=UNNAMED_MARKERS_PER_TYPE) / 1e4
        out[t, chosen[t]] = levels
        unnamed[cell_type] = [names[g] for g in np.sort(chosen[t])]
        out[t] /= out[t].sum()
    return out, unnamed


def donor_type_effects(n_types: int, n_genes: int, rng: np.random.Generator) -> np.ndarray:
    """One donor's type x gene multiplicative effect on top of its shared gene effect."""
    return np.exp(rng.normal(0.0, REALISTIC_DONOR_TYPE_LOG_SD, (n_types, n_genes)))


def soup_profile(
    cell_mix: np.ndarray, expression: np.ndarray, props: np.ndarray, hb_idx: np.ndarray
) -> tuple[np.ndarray, float]:
    """A donor's soup: its cells' mix plus lysed red cells' haemoglobin, and the globin share.

    The haemoglobin added is the donor's erythroid haemoglobin pattern (so cord soup carries
    its fetal globins), at ``SOUP_HB_PER_ERYTHROID`` x the erythroid share of the donor's
    cells, at most ``SOUP_HB_MAX``.
    """
    erythroid = [CELL_TYPES.index(t) for t in _ERYTHROID_TYPES]
    share = float(min(SOUP_HB_MAX, SOUP_HB_PER_ERYTHROID * props[erythroid].sum()))
    globin = np.zeros_like(cell_mix)
    globin[hb_idx] = expression[CELL_TYPES.index("erythroid"), hb_idx]
    soup = (1.0 - share) * cell_mix + share * globin / globin.sum()
    soup /= soup.sum()
    return soup, float(soup[hb_idx].sum())


def _pair_types() -> list[tuple[int, int]]:
    return [(CELL_TYPES.index(a), CELL_TYPES.index(b)) for a, b in CONTINUUM_PAIRS]


def _step_positions() -> np.ndarray:
    return (np.arange(CONTINUUM_STEPS) + 0.5) / CONTINUUM_STEPS


def continuum_rows(expression: np.ndarray) -> np.ndarray:
    """Expression along each naive-memory axis: (pairs x steps) x genes, pair by pair.

    The geometric interpolation of the naive and memory rows of ``expression`` (types x
    genes) at ``t = (k + 0.5) / CONTINUUM_STEPS``, scaled to the interpolated row sum.
    """
    t = _step_positions()[:, None]
    rows = []
    for naive, memory in _pair_types():
        log_naive = np.log(np.maximum(expression[naive], 1e-300))
        log_memory = np.log(np.maximum(expression[memory], 1e-300))
        mixed = np.exp((1.0 - t) * log_naive + t * log_memory)
        total = (1.0 - t) * expression[naive].sum() + t * expression[memory].sum()
        rows.append(mixed * (total / mixed.sum(axis=1, keepdims=True)))
    return np.vstack(rows)


def continuum_library_medians(library_median: np.ndarray) -> np.ndarray:
    """Median library size at each continuum row (geometric between the pair's two types)."""
    t = _step_positions()
    out = [
        np.exp((1.0 - t) * np.log(library_median[a]) + t * np.log(library_median[b]))
        for a, b in _pair_types()
    ]
    return np.concatenate(out)


def continuum_steps(comp_type: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each component's continuum row (pair * steps + step), -1 outside the T-cell pairs.

    A naive cell sits at ``t = 0.5 * B``, a memory cell at ``1 - 0.5 * B``, ``B ~ Beta`` with
    ``CONTINUUM_BETA``: the label stays the side of the axis the cell is on.
    """
    out = np.full(comp_type.size, -1, dtype=np.int64)
    half = CONTINUUM_STEPS // 2
    for p, (naive, memory) in enumerate(_pair_types()):
        for type_index, memory_side in ((naive, False), (memory, True)):
            where = np.flatnonzero(comp_type == type_index)
            depth = np.minimum((rng.beta(*CONTINUUM_BETA, size=where.size) * half), half - 1)
            step = depth.astype(np.int64)
            out[where] = p * CONTINUUM_STEPS + (CONTINUUM_STEPS - 1 - step if memory_side else step)
    return out


def continuum_position(row: np.ndarray) -> np.ndarray:
    """The axis position t of continuum rows (NaN where row is -1)."""
    step = np.where(row >= 0, row % CONTINUUM_STEPS, 0)
    return np.where(row >= 0, _step_positions()[step], np.nan)


def stressed_donor_log2fc(
    donor_condition: Sequence[str],
    contrast: Sequence[str],
    mode: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per donor, the log2 fold of the stress genes (0 = not stressed).

    ``independent``: ``STRESS_DONOR_SHARE`` of each condition's donors (rounded half up,
    chosen at random), so stress is balanced between conditions by design.
    ``with_condition``: every donor of the contrast's condition, none of its reference.
    """
    conditions = np.asarray(donor_condition, dtype=object)
    stressed = np.zeros(conditions.size, dtype=bool)
    if mode == "with_condition":
        stressed = conditions == contrast[0]
    else:
        for condition in contrast:
            members = np.flatnonzero(conditions == condition)
            n_stressed = int(np.floor(members.size * STRESS_DONOR_SHARE + 0.5))
            stressed[rng.choice(members, size=n_stressed, replace=False)] = True
    log2fc = rng.uniform(*STRESS_LOG2FC_RANGE, size=conditions.size)
    return np.where(stressed, np.round(log2fc, 3), 0.0)


def haemoglobin_index(genes: pd.DataFrame) -> np.ndarray:
    """Column indices of the haemoglobin genes."""
    names = genes["gene"].tolist()
    return np.array([names.index(g) for g in HAEMOGLOBIN])
