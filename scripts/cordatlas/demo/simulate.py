"""Deterministic simulator of a cord blood vs adult single-cell RNA-seq study with known truth.

The biology it draws from (cell types, gene sets, expression levels) is data in
:mod:`cordatlas.demo.biology`; :mod:`cordatlas.demo.write` writes a study as demo files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.checks import check_contrast, require_columns
from cordatlas.demo import realistic as real
from cordatlas.demo.biology import (
    CELL_CYCLE_G2M,
    CELL_CYCLE_S,
    CELL_TYPES,
    COMPONENTS,
    COMPOSITION,
    CONTINUUM_PAIRS,
    CYCLING_DEFAULT,
    CYCLING_FOLD,
    CYCLING_FRACTION,
    DAMAGED_MITO_RANGE,
    DAMAGED_TOTAL_RANGE,
    DIRICHLET_CONCENTRATION,
    DISPERSION_LOG_SD,
    DISPERSION_MEDIAN,
    DONOR_LOG_SD,
    DOUBLET_HETEROTYPIC,
    DOUBLET_MIX_BETA,
    HAEMOGLOBIN,
    HOUSEKEEPING,
    HOUSEKEEPING_LINEAGE,
    LIBRARY_LOG_SD,
    LIBRARY_MEDIAN,
    LINEAGE,
    LINEAGE_LEVELS,
    LINEAGES,
    LITERATURE_DIRECTION,
    LITERATURE_SET,
    LITERATURE_SET_OF_GENE,
    LOW_COUNT_RANGE,
    MARKER_OFF_CP10K,
    MARKERS,
    MITOCHONDRIAL,
    OPPOSITE_EFFECTS,
    PLANTED_EFFECTS,
    PROGRAMMES,
    RANDOM_DE_LOG2FC,
    RANDOM_DE_MIN_CP10K,
    RANDOM_DE_PER_TYPE,
    REALISTIC_DAMAGED_MITO_RANGE,
    REALISTIC_DAMAGED_TOTAL_RANGE,
    REALISTIC_DIRICHLET_CONCENTRATION,
    REALISTIC_DONOR_LOG_SD,
    RIBOSOMAL,
    SAMPLE_DEPTH_LOG_SD,
    SOUP_CELL_SHAPE,
    SOUP_FRACTION_RANGE,
    STRESS_CELL_SHAPE,
    STRESS_GENES,
    WEAK_PANEL_MARKERS,
)
from cordatlas.errors import UserInputError

__all__ = [
    # re-exported from cordatlas.demo.biology for callers of the simulator
    "CELL_CYCLE_G2M",
    "CELL_CYCLE_S",
    "CELL_TYPES",
    "REALISM_LEVELS",
    "SimulatedStudy",
    "build_gene_table",
    "simulate_study",
]

#: Cells generated per block (fixed: part of what makes a seed reproducible).
_BLOCK_CELLS = 2048
#: Means below this are drawn Poisson (the gamma's extra variance, mu^2 * phi, is negligible).
_GAMMA_MIN_MEAN = 0.05

#: Sample-sheet columns about files and QC overrides, not sample metadata: not put in obs.
_NOT_CARRIED = frozenset(
    {
        "format", "path", "url", "sha256", "barcode_pattern", "orientation", "genome",
        "min_counts", "max_counts", "min_genes", "max_genes", "max_pct_counts_mt",
    }
)  # fmt: skip

_TRUTH_DE_COLUMNS = ["cell_type", "gene", "log2FC", "programme", "reference_cp10k"]

#: config ``demo.realism``: ``realistic`` adds what :mod:`cordatlas.demo.realistic` plants;
#: ``simple`` is the original simulator (same seed, same counts), faster and flattering.
REALISM_LEVELS: tuple[str, ...] = ("realistic", "simple")


# ============================================================================================
# Public result type
# ============================================================================================
@dataclass
class SimulatedStudy:
    """A simulated study and its truth.

    Attributes
    ----------
    adata
        All barcodes (artefacts included), cells x genes, CSR int32 counts. obs: ``sample``,
        ``donor``, ``condition``, ``barcode``, ``cell_type``, ``artefact``, ``doublet_types``,
        ``phase`` and the sample sheet's other metadata columns (tissue, study, ...; not file
        locations or QC overrides); var: ``gene_ids``, ``category``.
    truth_cells
        One row per barcode, in the order of ``adata`` (grouped by sample, in sheet order):
        sample, donor, condition, barcode, cell_type, artefact, doublet_types ("A+B" for
        doublets, "" otherwise), phase; then what was planted in it: ambient_fraction
        (expected share of its UMIs from the soup; 1 for low-count barcodes), memory_score
        (position on the naive (0) to memory (1) axis of continuum T cells, else NaN),
        doublet_mix (a doublet's expected share of UMIs from the first type named in
        doublet_types, else NaN), damage_mito_share (a damaged cell's planted mitochondrial
        share, else NaN), stress_log2fc (log2 fold of the stress genes in this cell).
    truth_de
        Planted differences: cell_type, gene, log2FC (condition vs reference, positive = higher
        in the condition, on the scale of expected expression at equal library size),
        programme, reference_cp10k (the reference group's expected level), literature_set (the
        signature whose published expectation applies, "" for random genes),
        literature_direction (its expected direction in the condition), agrees_with_literature
        ("yes", "no", or "" without an expectation). Genes not listed are null in every type.
    truth_composition
        Per donor and type: donor, condition, cell_type, n_cells, proportion (among the
        donor's healthy singlets), donor_proportion (the donor's drawn expected proportion).
    truth_condition_composition
        condition, cell_type, expected_proportion (the Dirichlet mean).
    truth_genes
        gene, gene_ids, category, categories (all gene sets the gene belongs to), marker_of
        (types whose simulated marker programme has the gene, unnamed filler markers
        included), weak_in (types where the gene, an annotation-panel marker, is barely
        expressed), each ``;``-separated.
    truth_samples
        Per sample: sample, donor, condition, ambient_fraction (the sample's mean soup share),
        soup_haemoglobin_share (haemoglobin share of its soup), stressed, stress_log2fc (the
        donor's planted stress fold).
    """

    adata: ad.AnnData
    truth_cells: pd.DataFrame
    truth_de: pd.DataFrame
    truth_composition: pd.DataFrame
    truth_condition_composition: pd.DataFrame
    truth_genes: pd.DataFrame
    truth_samples: pd.DataFrame


# ============================================================================================
# Gene universe and expression profiles
# ============================================================================================
def _named_gene_categories() -> dict[str, list[str]]:
    """Every named gene with all the categories it belongs to, in a fixed order."""
    categories: dict[str, list[str]] = {}

    def add(genes: Sequence[str], category: str) -> None:
        for gene in genes:
            categories.setdefault(gene, [])
            if category not in categories[gene]:
                categories[gene].append(category)

    add(list(MITOCHONDRIAL), "mitochondrial")
    add(RIBOSOMAL, "ribosomal")
    add(list(HAEMOGLOBIN), "haemoglobin")
    add(list(HOUSEKEEPING), "housekeeping")
    for cell_type in CELL_TYPES:
        add(list(MARKERS[cell_type]), "marker")
    for programme, levels in PROGRAMMES.items():
        add(list(levels), programme)
    return categories


def build_gene_table(*, n_genes: int = 2000) -> pd.DataFrame:
    """The simulated gene universe: real symbols the workflow scores, then synthetic fillers.

    Parameters
    ----------
    n_genes
        Total number of genes; the named genes come first, filler genes ``SIMG00001``, ...
        fill up to ``n_genes``.

    Returns
    -------
    pd.DataFrame
        Columns ``gene``, ``gene_ids`` (``ENSG9`` + 10-digit index, unique), ``category``
        (the first of: mitochondrial, ribosomal, haemoglobin, housekeeping, marker, a
        programme name, filler) and ``categories`` (all of them, ``;``-separated).
    """
    named = _named_gene_categories()
    minimum = len(named) + RANDOM_DE_PER_TYPE * 4
    if n_genes < minimum:
        raise UserInputError(
            f"n_genes={n_genes} is too small: the simulator needs at least {minimum} genes "
            f"({len(named)} named genes plus filler genes for random DE); raise n_genes."
        )
    genes = list(named)
    cats = [";".join(named[g]) for g in genes]
    n_filler = n_genes - len(genes)
    genes += [f"SIMG{i:05d}" for i in range(1, n_filler + 1)]
    cats += ["filler"] * n_filler
    return pd.DataFrame(
        {
            "gene": genes,
            "gene_ids": [f"ENSG9{i:010d}" for i in range(1, n_genes + 1)],
            "category": [c.split(";")[0] for c in cats],
            "categories": cats,
        }
    )


def _baseline_profiles(genes: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Expected expression share of every gene in every type (types x genes, rows sum to 1)."""
    names = genes["gene"].tolist()
    index = {g: i for i, g in enumerate(names)}
    n_genes = len(names)
    filler = np.flatnonzero(genes["category"].to_numpy() == "filler")
    ribo = np.array([index[g] for g in RIBOSOMAL])
    mito = np.array([index[g] for g in MITOCHONDRIAL])
    hb = np.array([index[g] for g in HAEMOGLOBIN])
    hk = np.array([index[g] for g in HOUSEKEEPING])
    mito_w = np.array(list(MITOCHONDRIAL.values()), dtype=float)
    hb_w = np.array(list(HAEMOGLOBIN.values()), dtype=float)
    hk_base = np.array(list(HOUSEKEEPING.values()), dtype=float)
    ribo_base = np.exp(rng.normal(0.0, 0.4, ribo.size))

    # Filler genes: a heavy-tailed base level plus lineage- and type-level structure, so types
    # differ in hundreds of genes as real transcriptomes do (not only in their markers).
    filler_base = rng.normal(0.0, 1.2, filler.size)
    lineage_shift = {lin: rng.normal(0.0, 0.6, filler.size) for lin in LINEAGES}
    fixed_levels: dict[str, float] = {}
    for levels in PROGRAMMES.values():
        fixed_levels.update(levels)
    marker_genes = [g for t in CELL_TYPES for g in MARKERS[t]]

    profiles = np.zeros((len(CELL_TYPES), n_genes))
    for t, cell_type in enumerate(CELL_TYPES):
        lineage = LINEAGE[cell_type]
        ribo_frac, mito_frac, hb_frac, hk_frac = COMPONENTS[cell_type]
        row = np.zeros(n_genes)
        row[ribo] = ribo_frac * _normalise(ribo_base * np.exp(rng.normal(0.0, 0.1, ribo.size)))
        row[mito] = mito_frac * _normalise(mito_w)
        row[hb] = hb_frac * _normalise(hb_w)
        hk_w = hk_base * np.exp(rng.normal(0.0, 0.25, hk.size))
        for gene, fold in HOUSEKEEPING_LINEAGE.get(lineage, {}).items():
            hk_w[list(HOUSEKEEPING).index(gene)] *= fold
        row[hk] = hk_frac * _normalise(hk_w)
        # named non-component genes, in CP10k: markers > lineage overrides > programme defaults
        levels = dict.fromkeys(marker_genes, MARKER_OFF_CP10K)
        levels.update(fixed_levels)
        levels.update(LINEAGE_LEVELS.get(lineage, {}))
        levels.update(MARKERS[cell_type])
        for gene, cp10k in levels.items():
            if gene in HAEMOGLOBIN or gene in HOUSEKEEPING:
                continue
            row[index[gene]] = cp10k / 1e4
        remainder = 1.0 - row.sum()
        if remainder < 0.15:
            raise AssertionError(f"profile of {cell_type} leaves {remainder:.2f} for fillers")
        type_shift = rng.normal(0.0, 0.35, filler.size)
        row[filler] = remainder * _normalise(
            np.exp(filler_base + lineage_shift[lineage] + type_shift)
        )
        profiles[t] = row
    return profiles


def _normalise(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _condition_log2fc(
    genes: pd.DataFrame,
    profiles: np.ndarray,
    rng: np.random.Generator,
    *,
    extra: Sequence[tuple[str, tuple[str, ...], dict[str, float]]] = (),
) -> tuple[np.ndarray, pd.DataFrame]:
    """Planted log2FC (types x genes) of the case condition vs the reference, and its table."""
    names = genes["gene"].tolist()
    index = {g: i for i, g in enumerate(names)}
    lfc = np.zeros(profiles.shape)
    rows: list[dict[str, object]] = []
    for programme, cell_types, effects in (*PLANTED_EFFECTS, *extra):
        for cell_type in cell_types:
            t = CELL_TYPES.index(cell_type)
            for gene, value in effects.items():
                lfc[t, index[gene]] = value
                rows.append(
                    {
                        "cell_type": cell_type,
                        "gene": gene,
                        "log2FC": value,
                        "programme": programme,
                        "reference_cp10k": profiles[t, index[gene]] * 1e4,
                    }
                )
    filler = np.flatnonzero(genes["category"].to_numpy() == "filler")
    for t, cell_type in enumerate(CELL_TYPES):
        eligible = filler[profiles[t, filler] * 1e4 >= RANDOM_DE_MIN_CP10K]
        n_de = min(RANDOM_DE_PER_TYPE, eligible.size)
        chosen = np.sort(rng.choice(eligible, size=n_de, replace=False))
        magnitude = rng.uniform(*RANDOM_DE_LOG2FC, size=n_de)
        sign = np.where(rng.random(n_de) < 0.5, -1.0, 1.0)
        for g, value in zip(chosen, np.round(sign * magnitude, 3), strict=True):
            lfc[t, g] = value
            rows.append(
                {
                    "cell_type": cell_type,
                    "gene": names[g],
                    "log2FC": float(value),
                    "programme": "random",
                    "reference_cp10k": profiles[t, g] * 1e4,
                }
            )
    table = pd.DataFrame(rows, columns=_TRUTH_DE_COLUMNS)
    order = {c: i for i, c in enumerate(CELL_TYPES)}
    table = table.sort_values(
        ["cell_type", "gene"], key=lambda s: s.map(order) if s.name == "cell_type" else s
    ).reset_index(drop=True)
    return lfc, _with_literature(table)


def _with_literature(table: pd.DataFrame) -> pd.DataFrame:
    """truth_de with the published expectation each planted row is judged against."""
    sets = [
        LITERATURE_SET_OF_GENE.get(gene, LITERATURE_SET.get(programme, ""))
        if programme in LITERATURE_SET else ""
        for programme, gene in zip(table["programme"], table["gene"], strict=True)
    ]  # fmt: skip
    direction = [LITERATURE_DIRECTION.get(s, "") for s in sets]
    planted = np.where(table["log2FC"].to_numpy() > 0, "up", "down")
    agrees = [
        "" if d in ("", "conflicting") else ("yes" if d == p else "no")
        for d, p in zip(direction, planted, strict=True)
    ]
    return table.assign(
        literature_set=sets, literature_direction=direction, agrees_with_literature=agrees
    )


# ============================================================================================
# Count sampling
# ============================================================================================
def _sample_counts(mean: np.ndarray, shape: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
    """Draw gamma-Poisson (negative binomial) counts for a block of cells, returned as CSR.

    ``mean`` (cells x genes) is overwritten. ``shape`` is the gene-wise gamma shape
    (1 / dispersion); the gamma is drawn only where the mean makes it matter.
    """
    n_cells, n_genes = mean.shape
    flat = mean.reshape(-1)
    big = np.flatnonzero(flat > _GAMMA_MIN_MEAN)
    if big.size:
        gene_shape = shape[big % n_genes]
        flat[big] *= rng.standard_gamma(gene_shape) / gene_shape
    counts = rng.poisson(flat)
    hit = np.flatnonzero(counts)
    rows = hit // n_genes
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_cells), out=indptr[1:])
    return sp.csr_matrix(
        (counts[hit].astype(np.int32), (hit - rows * n_genes).astype(np.int32), indptr),
        shape=(n_cells, n_genes),
    )


def _random_barcodes(
    n: int, rng: np.random.Generator, *, exclude: frozenset[str] = frozenset()
) -> np.ndarray:
    """``n`` unique 16-bp ACGT barcodes with the ``-1`` GEM-group suffix, none in ``exclude``."""
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    shifts = np.arange(30, -1, -2, dtype=np.uint64)
    seen = set(exclude)
    out: list[str] = []
    while len(out) < n:
        codes = rng.integers(0, 4**16, size=n - len(out), dtype=np.uint64)
        digits = ((codes[:, None] >> shifts) & np.uint64(3)).astype(np.intp)
        raw = np.ascontiguousarray(letters[digits]).view("S16").ravel()
        for barcode in np.char.add(raw.astype(str), "-1").tolist():
            if barcode not in seen:
                seen.add(barcode)
                out.append(barcode)
    return np.array(out, dtype=object)


# ============================================================================================
# Study simulation
# ============================================================================================
def _absent(value: object) -> bool:
    """Whether a sample-sheet cell is empty (None, NaN, pd.NA or blank text)."""
    if isinstance(value, str):
        return value.strip() == ""
    return value is None or bool(np.ndim(value) == 0 and pd.isna(value))


def _sample_table(
    samples: pd.DataFrame, contrast: Sequence[str]
) -> tuple[pd.DataFrame, tuple[str, str]]:
    """Validate the sample sheet columns the simulator needs; return a clean copy and the contrast."""
    table = samples.copy()
    if "sample" not in table.columns and table.index.name == "sample":
        table = table.reset_index()
    require_columns(
        table.columns,
        ("sample", "donor", "condition"),
        table="sample sheet",
        fix="the simulator needs sample, donor and condition.",
    )
    if table.empty:
        raise UserInputError("sample sheet has no rows; add one row per sample.")
    table = table.reset_index(drop=True)
    for column in ("sample", "donor", "condition"):
        bad = table[column].map(_absent)
        if bad.any():
            raise UserInputError(
                f"sample sheet row {int(np.flatnonzero(bad)[0]) + 1}: column {column!r} is empty; "
                "fill it in."
            )
        table[column] = table[column].astype(str)
    duplicated = table["sample"][table["sample"].duplicated()].tolist()
    if duplicated:
        raise UserInputError(f"sample(s) {duplicated} appear twice; sample ids must be unique.")
    contrast = check_contrast(contrast)
    unknown = table.loc[~table["condition"].isin(contrast), ["sample", "condition"]]
    if not unknown.empty:
        first = unknown.iloc[0]
        raise UserInputError(
            f"sample {first['sample']!r}: condition {first['condition']!r} is not one of the "
            f"contrast {tuple(contrast)}; fix the sample sheet or the contrast."
        )
    per_donor = table.groupby("donor", sort=False)["condition"].nunique()
    if (per_donor > 1).any():
        donor = per_donor.index[per_donor > 1][0]
        raise UserInputError(
            f"donor {donor!r} has samples in more than one condition; a donor belongs to one "
            "condition."
        )
    return table, contrast


def _condition_means(contrast: Sequence[str], *, condition_effect: bool) -> np.ndarray:
    """Expected proportions, conditions (in contrast order) x types."""
    case = _normalise(np.array([COMPOSITION["case"][t] for t in CELL_TYPES]))
    reference = _normalise(np.array([COMPOSITION["reference"][t] for t in CELL_TYPES]))
    if not condition_effect:
        pooled = _normalise(case + reference)
        return np.vstack([pooled, pooled])
    return np.vstack([case, reference])


@dataclass(frozen=True)
class _Donors:
    """Per donor: its condition, drawn expected proportions and expected expression."""

    names: list[str]
    condition: dict[str, str]
    #: donors x types, the Dirichlet draw around the condition mean
    props: np.ndarray
    #: donors x rows x genes, expression shares: the types, the ambient soup (sums to 1), then
    #: (realistic) the naive-to-memory continuum rows
    mu: np.ndarray
    #: per donor: planted log2 fold of the stress genes (0 = not stressed)
    stress_log2fc: np.ndarray
    #: per donor: haemoglobin share of the soup
    soup_hb_share: np.ndarray


@dataclass(frozen=True)
class _Barcodes:
    """Every barcode, grouped by sample in sheet order: its sample, kind and cell type(s)."""

    sample: np.ndarray
    kind: np.ndarray
    type_a: np.ndarray
    #: the second cell type of a doublet, -1 otherwise
    type_b: np.ndarray


@dataclass(frozen=True)
class _Components:
    """The cells summed into barcodes: one per barcode (in barcode order), then doublets' second."""

    owner: np.ndarray
    #: row of the flattened donor x rows expression
    profile: np.ndarray
    library: np.ndarray
    #: 0 G1, 1 S, 2 G2M
    phase: np.ndarray
    #: damaged cells: fraction of non-mitochondrial RNA kept, fold of mitochondrial RNA
    keep: np.ndarray
    mito_fold: np.ndarray
    #: expected UMIs relative to `library` (a damaged cell's remaining share of its RNA)
    total_factor: np.ndarray
    #: damaged cells: the planted mitochondrial share, NaN otherwise
    damage_mito: np.ndarray
    #: fold of the stress genes
    stress_fold: np.ndarray
    #: expected soup UMIs added to the component (realistic: each cell barcode's first one)
    soup_library: np.ndarray
    #: continuum row of a T cell (pair * steps + step), -1 otherwise
    continuum: np.ndarray


def simulate_study(
    samples: pd.DataFrame,
    *,
    n_cells_per_sample: int = 750,
    n_genes: int = 2000,
    seed: int = 0,
    condition_effect: bool = True,
    damaged_rate: float = 0.05,
    low_count_rate: float = 0.05,
    doublet_rate: float = 0.06,
    contrast: Sequence[str] = ("cord_blood", "adult"),
    realism: str = "simple",
    stress: str = "independent",
    threads: int = 1,
) -> SimulatedStudy:
    """Simulate a cord blood vs adult study with planted, known differences.

    ``simple`` (the original simulator): counts are negative binomial (gamma-Poisson): per
    cell type a baseline expression profile built from real marker genes and gene
    programmes, times a per-donor x gene log-normal effect (sd 0.15), times the planted
    condition effect, times a log-normal library size (type-specific median, sample-level
    depth factor); gene-wise dispersion. Progenitors cycle (S or G2/M genes up). Each sample
    also holds damaged cells (mitochondrial fraction 25-80 %), low-count ambient barcodes
    (30-300 UMI) and doublets (two cells summed, 90 % of different types) at the given rates.
    Donor proportions are Dirichlet with concentration 200.

    ``realistic`` (config default) adds, with constants in :mod:`cordatlas.demo.biology`:
    ambient RNA (a per-sample soup with lysed red cells' haemoglobin in every droplet); a
    naive-to-memory continuum in CD4 and CD8 T cells; larger, cell-type-specific donor
    effects and Dirichlet concentration 30; doublets with a Beta mixing fraction and
    frequency-driven homotypic share; damaged cells at 8-40 % mitochondrial share; a stress
    programme in some donors (``stress``); marker programmes that differ from the annotation
    panel; one planted effect opposite to the literature (S100A8/S100A9 in CD14 monocytes).
    Each is recorded in the truth tables.

    Parameters
    ----------
    samples
        At least ``sample``, ``donor``, ``condition`` (values from ``contrast``; ``sample`` may
        be the index). Other metadata columns (tissue, study, sex, ...) are carried into
        ``adata.obs``; file-location and QC-override columns are not.
    n_cells_per_sample
        Barcodes per sample, artefacts included.
    n_genes
        Genes simulated (named genes first, then synthetic fillers).
    seed
        Seed of every random draw; the same seed gives identical counts and truth.
    condition_effect
        False plants no differential expression and gives both conditions the same expected
        composition (a null study for calibration).
    damaged_rate, low_count_rate, doublet_rate
        Fraction of each sample's barcodes that are damaged cells, low-count barcodes and
        doublets (rounded to whole barcodes).
    contrast
        (condition, reference): planted effects are of the first versus the second.
    realism
        ``simple`` or ``realistic`` (see above). The default here is ``simple``, so that unit
        tests of the methods keep their fast, flattering data; the workflow's default (config
        ``demo.realism``) and the command line's are ``realistic``.
    stress
        Realistic only: ``independent`` stresses half of each condition's donors,
        ``with_condition`` every donor of the condition and none of the reference.
    threads
        Threads drawing counts (blocks of cells have their own generators, so the result is
        identical for any number of threads).

    Returns
    -------
    SimulatedStudy
        The counts and every truth table.
    """
    table, contrast = _sample_table(samples, contrast)
    realistic = _check_realism(realism, stress)
    rates = {"damaged": damaged_rate, "low_count": low_count_rate, "doublet": doublet_rate}
    n_kind = _barcodes_per_kind(n_cells_per_sample, rates)

    streams = np.random.SeedSequence(seed).spawn(7)
    rng_profile, rng_de, rng_donor, rng_comp, rng_cells, rng_barcode = (
        np.random.default_rng(s) for s in streams[:6]
    )
    # the realistic simulator's own stream: `simple` draws exactly what it always drew
    rng_real = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    genes = build_gene_table(n_genes=n_genes)
    profiles = _baseline_profiles(genes, rng_profile)
    shape = 1.0 / np.clip(
        DISPERSION_MEDIAN * np.exp(rng_profile.normal(0.0, DISPERSION_LOG_SD, n_genes)),
        0.02,
        2.0,
    )
    unnamed: dict[str, list[str]] = {}
    if realistic:
        profiles, unnamed = real.adjust_markers(genes, profiles, rng_real)
    extra = OPPOSITE_EFFECTS if realistic else ()
    lfc, truth_de = _condition_log2fc(genes, profiles, rng_de, extra=extra)
    if not condition_effect:
        lfc[:] = 0.0
        truth_de = truth_de.iloc[0:0].copy()
    means = _condition_means(contrast, condition_effect=condition_effect)
    donor_rngs = (rng_comp, rng_donor, rng_real if realistic else None)
    donors = _donor_model(table, contrast, means, profiles, lfc, genes, donor_rngs, stress=stress)

    cells = _draw_barcodes(table, donors, n_kind, rng_cells, by_frequency=realistic)
    components = _draw_components(
        table, donors, cells, genes, profiles, rng_cells, realistic=realistic
    )
    sample_soup = np.zeros(len(table))
    if realistic:
        components, sample_soup = _realistic_components(components, table, donors, cells, rng_real)
    x = _draw_counts(
        components, donors.mu, shape, genes, n_cells=cells.sample.size, root=streams[6],
        threads=threads,
    )  # fmt: skip

    truth_cells = _truth_cells(table, cells, components, rng_barcode)
    adata = ad.AnnData(X=x, obs=_obs_table(truth_cells, table, cells.sample), var=_var_table(genes))
    adata.uns["simulation"] = {
        "seed": int(seed),
        "n_cells_per_sample": int(n_cells_per_sample),
        "n_genes": int(n_genes),
        "condition_effect": bool(condition_effect),
        "damaged_rate": float(damaged_rate),
        "low_count_rate": float(low_count_rate),
        "doublet_rate": float(doublet_rate),
        "contrast": list(contrast),
        "realism": realism,
        "stress": stress if realistic else "none",
    }
    return SimulatedStudy(
        adata=adata,
        truth_cells=truth_cells,
        truth_de=truth_de.reset_index(drop=True),
        truth_composition=_composition_table(truth_cells, donors),
        truth_condition_composition=_condition_composition_table(contrast, means),
        truth_genes=_truth_genes(genes, unnamed, realistic=realistic),
        truth_samples=_truth_samples(table, donors, sample_soup),
    )


# ---- check --------------------------------------------------------------------------------
def _check_realism(realism: str, stress: str) -> bool:
    """Whether the study is realistic; a UserInputError for unknown values."""
    if realism not in REALISM_LEVELS:
        raise UserInputError(
            f"demo realism {realism!r} is not one of {', '.join(REALISM_LEVELS)}; set "
            "demo.realism in the config."
        )
    if stress not in real.STRESS_MODES:
        raise UserInputError(
            f"demo stress {stress!r} is not one of {', '.join(real.STRESS_MODES)}; set "
            "demo.stress in the config."
        )
    return realism == "realistic"


def _barcodes_per_kind(n_cells_per_sample: int, rates: Mapping[str, float]) -> dict[str, int]:
    """Barcodes per sample of each kind (healthy ``none`` first), or a UserInputError."""
    for name, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise UserInputError(f"{name}_rate must lie in [0, 1), got {rate!r}.")
    n_artefacts = {k: int(round(v * n_cells_per_sample)) for k, v in rates.items()}
    n_healthy = n_cells_per_sample - sum(n_artefacts.values())
    if n_cells_per_sample < 1 or n_healthy < 1:
        raise UserInputError(
            f"n_cells_per_sample={n_cells_per_sample} with artefact rates {dict(rates)} leaves no "
            "healthy cells; raise n_cells_per_sample or lower the rates."
        )
    return {"none": n_healthy, **n_artefacts}


# ---- compute ------------------------------------------------------------------------------
def _library_medians() -> np.ndarray:
    return np.array([LIBRARY_MEDIAN[t] for t in CELL_TYPES])


def _donor_model(
    table: pd.DataFrame,
    contrast: Sequence[str],
    means: np.ndarray,
    profiles: np.ndarray,
    lfc: np.ndarray,
    genes: pd.DataFrame,
    rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator | None],
    *,
    stress: str,
) -> _Donors:
    """Per donor: expected proportions and expression (+ an ambient profile: the UMI-weighted
    mix of the donor's cells, what lysed cells leave in the droplet soup).

    ``rngs`` are the composition, donor-effect and realistic generators; a realistic generator
    (not None) adds type-specific donor effects, the soup's haemoglobin, the continuum rows
    and stressed donors.
    """
    rng_comp, rng_donor, rng_real = rngs
    realistic = rng_real is not None
    donors = list(dict.fromkeys(table["donor"]))
    donor_condition = dict(zip(table["donor"], table["condition"], strict=True))
    n_types, n_genes = profiles.shape
    n_extra = len(CONTINUUM_PAIRS) * real.CONTINUUM_STEPS if realistic else 0
    concentration = REALISTIC_DIRICHLET_CONCENTRATION if realistic else DIRICHLET_CONCENTRATION
    donor_sd = REALISTIC_DONOR_LOG_SD if realistic else DONOR_LOG_SD
    hb_idx = real.haemoglobin_index(genes)
    donor_props = np.zeros((len(donors), n_types))
    mu = np.zeros((len(donors), n_types + 1 + n_extra, n_genes))
    soup_hb = np.zeros(len(donors))
    lib_median = _library_medians()
    for d, donor in enumerate(donors):
        c = list(contrast).index(donor_condition[donor])
        donor_props[d] = rng_comp.dirichlet(concentration * means[c])
        effect = np.exp(rng_donor.normal(0.0, donor_sd, n_genes))
        expression = profiles * effect
        if realistic:
            expression = expression * real.donor_type_effects(n_types, n_genes, rng_real)
        if c == 0:
            expression = expression * np.exp2(lfc)
        mu[d, :n_types] = expression
        umi = donor_props[d] * lib_median
        ambient = _normalise(umi @ (expression / expression.sum(1, keepdims=True)))
        if realistic:
            ambient, soup_hb[d] = real.soup_profile(ambient, expression, donor_props[d], hb_idx)
            mu[d, n_types + 1 :] = real.continuum_rows(expression)
        else:
            soup_hb[d] = float(ambient[hb_idx].sum())
        mu[d, n_types] = ambient
    stress_log2fc = np.zeros(len(donors))
    if realistic:
        stress_log2fc = real.stressed_donor_log2fc(
            [donor_condition[d] for d in donors], contrast, stress, rng_real
        )
    return _Donors(
        names=donors, condition=donor_condition, props=donor_props, mu=mu,
        stress_log2fc=stress_log2fc, soup_hb_share=soup_hb,
    )  # fmt: skip


def _draw_barcodes(
    table: pd.DataFrame,
    donors: _Donors,
    n_kind: Mapping[str, int],
    rng: np.random.Generator,
    *,
    by_frequency: bool = False,
) -> _Barcodes:
    """Every barcode's kind and cell type(s), sample by sample, in a random order per sample.

    A doublet's second cell is of another type with probability ``DOUBLET_HETEROTYPIC``, or
    (``by_frequency``) drawn from the sample's type frequencies like the first, so that the
    homotypic share is the sum of squared frequencies.
    """
    n_types = len(CELL_TYPES)
    n_per_sample = sum(n_kind.values())
    out_sample: list[np.ndarray] = []
    out_kind: list[np.ndarray] = []
    out_type_a: list[np.ndarray] = []
    out_type_b: list[np.ndarray] = []
    for s, row in table.iterrows():
        props = donors.props[donors.names.index(row["donor"])]
        kinds = np.repeat(np.array(list(n_kind)), list(n_kind.values()))
        type_a = np.full(n_per_sample, -1)
        type_b = np.full(n_per_sample, -1)
        singlet = (kinds == "none") | (kinds == "damaged")
        type_a[singlet] = rng.choice(n_types, size=int(singlet.sum()), p=props)
        doublet = np.flatnonzero(kinds == "doublet")
        type_a[doublet] = rng.choice(n_types, size=doublet.size, p=props)
        if by_frequency:
            type_b[doublet] = rng.choice(n_types, size=doublet.size, p=props)
        for i in doublet if not by_frequency else ():
            if rng.random() < DOUBLET_HETEROTYPIC:
                other = props.copy()
                other[type_a[i]] = 0.0
                type_b[i] = rng.choice(n_types, p=_normalise(other))
            else:
                type_b[i] = type_a[i]
        order = rng.permutation(n_per_sample)
        out_sample.append(np.full(n_per_sample, s))
        out_kind.append(kinds[order])
        out_type_a.append(type_a[order])
        out_type_b.append(type_b[order])
    return _Barcodes(
        sample=np.concatenate(out_sample),
        kind=np.concatenate(out_kind),
        type_a=np.concatenate(out_type_a),
        type_b=np.concatenate(out_type_b),
    )


def _draw_components(
    table: pd.DataFrame,
    donors: _Donors,
    cells: _Barcodes,
    genes: pd.DataFrame,
    profiles: np.ndarray,
    rng: np.random.Generator,
    *,
    realistic: bool = False,
) -> _Components:
    """Each component's expression profile, library size, phase and damage."""
    n_types = len(CELL_TYPES)
    n_rows = donors.mu.shape[1]
    n_cells = cells.sample.size
    sample_donor = np.array([donors.names.index(x) for x in table["donor"]])
    cell_donor = sample_donor[cells.sample]
    sample_depth = np.exp(rng.normal(0.0, SAMPLE_DEPTH_LOG_SD, len(table)))

    # components: one per barcode, a second for doublets
    second = np.flatnonzero(cells.kind == "doublet")
    owner = np.concatenate([np.arange(n_cells), second])
    comp_type = np.concatenate([cells.type_a, cells.type_b[second]])
    low = np.flatnonzero(cells.kind == "low_count")
    profile = cell_donor[owner] * n_rows + comp_type
    profile[low] = cell_donor[low] * n_rows + n_types  # ambient
    n_comp = owner.size
    safe_type = np.maximum(comp_type, 0)
    library = (
        _library_medians()[safe_type]
        * np.exp(rng.normal(0.0, LIBRARY_LOG_SD, n_comp))
        * sample_depth[cells.sample[owner]]
    )
    library[low] = np.exp(rng.uniform(*np.log(LOW_COUNT_RANGE), size=low.size))
    cycling = np.array([CYCLING_FRACTION.get(t, CYCLING_DEFAULT) for t in CELL_TYPES])
    cycle_draw = rng.random(n_comp)
    phase = np.zeros(n_comp, dtype=np.int8)  # 0 G1, 1 S, 2 G2M
    is_cycling = cycle_draw < cycling[safe_type]
    phase[is_cycling] = np.where(cycle_draw[is_cycling] < cycling[safe_type][is_cycling] / 2, 1, 2)
    phase[low] = 0

    # a damaged cell lost cytoplasmic RNA but kept its mitochondria: its total falls to a
    # fraction `total` of a healthy cell's while the mitochondrial share rises to `target`
    damaged = np.flatnonzero(cells.kind == "damaged")
    keep = np.ones(n_comp)
    mito_fold = np.ones(n_comp)
    total_factor = np.ones(n_comp)
    damage_mito = np.full(n_comp, np.nan)
    mito_range = REALISTIC_DAMAGED_MITO_RANGE if realistic else DAMAGED_MITO_RANGE
    total_range = REALISTIC_DAMAGED_TOTAL_RANGE if realistic else DAMAGED_TOTAL_RANGE
    target = rng.uniform(*mito_range, size=damaged.size)
    total = rng.uniform(*total_range, size=damaged.size)
    mito_idx = np.flatnonzero(genes["category"].to_numpy() == "mitochondrial")
    f0 = profiles[:, mito_idx].sum(1)[comp_type[damaged]]
    keep[damaged] = total * (1 - target) / (1 - f0)
    mito_fold[damaged] = total * target / f0
    total_factor[damaged] = total
    damage_mito[damaged] = target
    return _Components(
        owner=owner, profile=profile, library=library, phase=phase, keep=keep,
        mito_fold=mito_fold, total_factor=total_factor, damage_mito=damage_mito,
        stress_fold=np.ones(n_comp), soup_library=np.zeros(n_comp),
        continuum=np.full(n_comp, -1, dtype=np.int64),
    )  # fmt: skip


def _realistic_components(
    components: _Components,
    table: pd.DataFrame,
    donors: _Donors,
    cells: _Barcodes,
    rng: np.random.Generator,
) -> tuple[_Components, np.ndarray]:
    """Components with the continuum, unequal doublet parents, stress and soup; sample soup shares."""
    n_types = len(CELL_TYPES)
    n_cells = cells.sample.size
    n_rows = donors.mu.shape[1]
    owner = components.owner
    comp_donor = components.profile // n_rows
    comp_type = components.profile % n_rows
    comp_type = np.where(comp_type < n_types, comp_type, -1)
    library = components.library.copy()
    profile = components.profile.copy()

    # naive-to-memory continuum: the row and library median of the cell's position
    continuum = real.continuum_steps(comp_type, rng)
    on_axis = np.flatnonzero(continuum >= 0)
    medians = _library_medians()
    axis_medians = real.continuum_library_medians(medians)
    library[on_axis] *= axis_medians[continuum[on_axis]] / medians[comp_type[on_axis]]
    profile[on_axis] = comp_donor[on_axis] * n_rows + n_types + 1 + continuum[on_axis]

    # doublets: the first parent's share of the pair's RNA is Beta distributed
    second = np.arange(n_cells, owner.size)
    first = owner[second]
    pair_total = library[first] + library[second]
    share = rng.beta(*DOUBLET_MIX_BETA, size=second.size)
    library[first], library[second] = share * pair_total, (1 - share) * pair_total

    # stress genes: the donor's fold times a per-cell gamma intensity (mean 1)
    intensity = rng.standard_gamma(STRESS_CELL_SHAPE, owner.size) / STRESS_CELL_SHAPE
    stress_fold = np.exp2(donors.stress_log2fc[comp_donor] * intensity)

    # soup: a per-sample mean share, per cell a gamma spread around it, on the first component
    sample_soup = rng.uniform(*SOUP_FRACTION_RANGE, size=len(table))
    rho = sample_soup[cells.sample] * rng.standard_gamma(SOUP_CELL_SHAPE, n_cells)
    rho = np.clip(rho / SOUP_CELL_SHAPE, 0.0, 0.5)
    # the soup a droplet holds does not depend on its cell's damage: damaged cells, with less
    # RNA of their own, carry a larger soup share
    own = np.bincount(owner, weights=library, minlength=n_cells)
    soup_library = np.zeros(owner.size)
    is_cell = cells.kind != "low_count"
    soup_library[:n_cells] = np.where(is_cell, rho / (1 - rho) * own, 0.0)
    stress_fold[:n_cells][~is_cell] = 1.0
    out = dataclasses.replace(
        components, profile=profile, library=library, stress_fold=stress_fold,
        soup_library=soup_library, continuum=continuum,
    )  # fmt: skip
    return out, sample_soup


def _draw_counts(
    components: _Components,
    mu: np.ndarray,
    shape: np.ndarray,
    genes: pd.DataFrame,
    *,
    n_cells: int,
    root: np.random.SeedSequence,
    threads: int,
) -> sp.csr_matrix:
    """The counts matrix (barcodes x genes, CSR int32), drawn block by block of barcodes."""
    n_genes = mu.shape[-1]
    n_rows = mu.shape[1]
    gene_names = genes["gene"].tolist()
    s_idx = np.array([gene_names.index(g) for g in CELL_CYCLE_S])
    g2m_idx = np.array([gene_names.index(g) for g in CELL_CYCLE_G2M])
    stress_idx = np.array([gene_names.index(g) for g in STRESS_GENES])
    mito_idx = np.flatnonzero(genes["category"].to_numpy() == "mitochondrial")
    owner, phase, keep = components.owner, components.phase, components.keep
    mu_flat = mu.reshape(-1, n_genes)
    # each component's soup row: its donor's ambient profile
    soup_row = (components.profile // n_rows) * n_rows + len(CELL_TYPES)
    comp_order = np.argsort(owner, kind="stable")
    comp_start = np.searchsorted(owner[comp_order], np.arange(n_cells + 1))
    n_blocks = max(1, math.ceil(n_cells / _BLOCK_CELLS))
    block_seeds = root.spawn(n_blocks)

    def draw_block(b: int) -> sp.csr_matrix:
        # each block has its own generator: the result does not depend on `threads`
        lo_cell, hi_cell = b * _BLOCK_CELLS, min(n_cells, (b + 1) * _BLOCK_CELLS)
        comps = comp_order[comp_start[lo_cell] : comp_start[hi_cell]]
        mean = mu_flat[components.profile[comps]] * components.library[comps, None]
        for ph, idx in ((1, s_idx), (2, g2m_idx)):
            rows = np.flatnonzero(phase[comps] == ph)
            if rows.size:
                mean[np.ix_(rows, idx)] *= CYCLING_FOLD
        rows = np.flatnonzero(keep[comps] != 1.0)
        if rows.size:
            mean[rows] *= keep[comps][rows, None]
            mean[np.ix_(rows, mito_idx)] *= (components.mito_fold[comps] / keep[comps])[rows, None]
        _add_stress_and_soup(mean, components, comps, mu_flat, soup_row, stress_idx)
        counts = _sample_counts(mean, shape, np.random.default_rng(block_seeds[b]))
        del mean
        if comps.size == hi_cell - lo_cell:  # no doublet in this block
            return counts
        combine = sp.csr_matrix(
            (np.ones(comps.size, dtype=np.int32), (owner[comps] - lo_cell, np.arange(comps.size))),
            shape=(hi_cell - lo_cell, comps.size),
        )
        block = (combine @ counts).tocsr()
        block.sort_indices()
        return block

    if threads > 1 and n_blocks > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            blocks = list(pool.map(draw_block, range(n_blocks)))
    else:
        blocks = [draw_block(b) for b in range(n_blocks)]
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.concatenate([np.diff(blk.indptr) for blk in blocks]), out=indptr[1:])
    data = np.concatenate([blk.data.astype(np.int32, copy=False) for blk in blocks])
    indices = np.concatenate([blk.indices.astype(np.int32, copy=False) for blk in blocks])
    del blocks
    return sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def _add_stress_and_soup(
    mean: np.ndarray,
    components: _Components,
    comps: np.ndarray,
    mu_flat: np.ndarray,
    soup_row: np.ndarray,
    stress_idx: np.ndarray,
) -> None:
    """Raise stressed cells' stress genes, then add each droplet's soup (in place)."""
    fold = components.stress_fold[comps]
    rows = np.flatnonzero(fold != 1.0)
    if rows.size:
        mean[np.ix_(rows, stress_idx)] *= fold[rows, None]
    soup = components.soup_library[comps]
    rows = np.flatnonzero(soup > 0)
    if rows.size:
        mean[rows] += soup[rows, None] * mu_flat[soup_row[comps][rows]]


# ---- format -------------------------------------------------------------------------------
def _truth_cells(
    table: pd.DataFrame, cells: _Barcodes, components: _Components, rng: np.random.Generator
) -> pd.DataFrame:
    """One row per barcode: sample, donor, condition, barcode, cell type, artefact, phase, and
    what was planted in it."""
    n_types = len(CELL_TYPES)
    n_cells = cells.sample.size
    kind = cells.kind
    barcodes = np.empty(n_cells, dtype=object)
    for s in range(len(table)):
        where = np.flatnonzero(cells.sample == s)
        barcodes[where] = _random_barcodes(where.size, rng)
    type_names = np.array([*CELL_TYPES, "ambient"], dtype=object)
    cell_type = type_names[np.where(kind == "low_count", n_types, np.maximum(cells.type_a, 0))]
    cell_type[kind == "doublet"] = "doublet"
    doublet_types = np.full(n_cells, "", dtype=object)
    for i in np.flatnonzero(kind == "doublet"):
        pair = sorted((cells.type_a[i], cells.type_b[i]))
        doublet_types[i] = f"{CELL_TYPES[pair[0]]}+{CELL_TYPES[pair[1]]}"
    phase_names = np.array(["G1", "S", "G2M"], dtype=object)
    cell_phase = phase_names[components.phase[:n_cells]]
    cell_phase[(kind == "low_count") | (kind == "doublet")] = "none"
    return pd.DataFrame(
        {
            "sample": table["sample"].to_numpy(dtype=object)[cells.sample],
            "donor": table["donor"].to_numpy(dtype=object)[cells.sample],
            "condition": table["condition"].to_numpy(dtype=object)[cells.sample],
            "barcode": barcodes,
            "cell_type": cell_type,
            "artefact": kind.astype(object),
            "doublet_types": doublet_types,
            "phase": cell_phase,
            **_planted_columns(cells, components),
        }
    )


def _planted_columns(cells: _Barcodes, components: _Components) -> dict[str, np.ndarray]:
    """Per barcode: soup share, continuum position, doublet mix, planted damage and stress."""
    n_cells = cells.sample.size
    kind = cells.kind
    owner = components.owner
    expected = components.library * components.total_factor
    own = np.bincount(owner, weights=expected, minlength=n_cells)
    soup = components.soup_library[:n_cells]
    ambient = np.where(kind == "low_count", 1.0, soup / np.maximum(own + soup, 1e-12))
    # a doublet's share of its own RNA from the type named first ("A+B" is sorted by type)
    mix = np.full(n_cells, np.nan)
    second = np.arange(n_cells, owner.size)
    first = owner[second]
    share_a = expected[first] / (expected[first] + expected[second])
    a_first = cells.type_a[first] <= cells.type_b[first]
    mix[first] = np.round(np.where(a_first, share_a, 1.0 - share_a), 4)
    memory = real.continuum_position(components.continuum[:n_cells])
    memory[kind == "doublet"] = np.nan
    stress = np.log2(components.stress_fold[:n_cells])
    return {
        "ambient_fraction": np.round(ambient, 4),
        "memory_score": memory,
        "doublet_mix": mix,
        "damage_mito_share": np.round(components.damage_mito[:n_cells], 4),
        "stress_log2fc": np.round(stress, 4),
    }


def _obs_table(
    truth_cells: pd.DataFrame, table: pd.DataFrame, cell_sample: np.ndarray
) -> pd.DataFrame:
    """truth_cells plus the sheet's metadata columns, categorical, indexed ``{sample}_{barcode}``."""
    obs = truth_cells.copy()
    for column in table.columns:
        if column in obs.columns or column in _NOT_CARRIED:
            continue
        values = table[column]
        if values.map(_absent).all():
            continue
        obs[column] = values.map(lambda v: "" if _absent(v) else str(v)).to_numpy()[cell_sample]
    for column in obs.columns:
        if column != "barcode" and not pd.api.types.is_numeric_dtype(obs[column]):
            obs[column] = pd.Categorical(obs[column])
    obs.index = pd.Index(
        [
            f"{sname}_{bc}"
            for sname, bc in zip(truth_cells["sample"], truth_cells["barcode"], strict=True)
        ]
    )
    return obs


def _truth_genes(
    genes: pd.DataFrame, unnamed: Mapping[str, list[str]], *, realistic: bool
) -> pd.DataFrame:
    """truth_genes: the gene table, which types each gene marks, where panel markers are weak."""
    marker_of: dict[str, list[str]] = {}
    weak_in: dict[str, list[str]] = {}
    for cell_type in CELL_TYPES:
        weak = set(WEAK_PANEL_MARKERS.get(cell_type, ())) if realistic else set()
        for gene in MARKERS[cell_type]:
            (weak_in if gene in weak else marker_of).setdefault(gene, []).append(cell_type)
        for gene in unnamed.get(cell_type, []):
            marker_of.setdefault(gene, []).append(cell_type)
    table = genes[["gene", "gene_ids", "category", "categories"]].copy()
    table["marker_of"] = [";".join(marker_of.get(g, [])) for g in table["gene"]]
    table["weak_in"] = [";".join(weak_in.get(g, [])) for g in table["gene"]]
    return table


def _truth_samples(table: pd.DataFrame, donors: _Donors, sample_soup: np.ndarray) -> pd.DataFrame:
    """truth_samples: each sample's soup and its donor's planted stress."""
    donor = [donors.names.index(d) for d in table["donor"]]
    stress = donors.stress_log2fc[donor]
    return pd.DataFrame(
        {
            "sample": table["sample"].to_numpy(dtype=object),
            "donor": table["donor"].to_numpy(dtype=object),
            "condition": table["condition"].to_numpy(dtype=object),
            "ambient_fraction": np.round(sample_soup, 4),
            "soup_haemoglobin_share": np.round(donors.soup_hb_share[donor], 4),
            "stressed": stress > 0,
            "stress_log2fc": stress,
        }
    )


def _var_table(genes: pd.DataFrame) -> pd.DataFrame:
    var = genes.set_index("gene")[["gene_ids", "category"]].copy()
    var.index.name = None
    return var


def _composition_table(truth_cells: pd.DataFrame, donors: _Donors) -> pd.DataFrame:
    """Per donor and type: healthy singlets counted, their proportion, the drawn proportion."""
    healthy = truth_cells[truth_cells["artefact"] == "none"]
    counts = (
        pd.crosstab(healthy["donor"], healthy["cell_type"])
        .reindex(index=donors.names, columns=list(CELL_TYPES), fill_value=0)
        .to_numpy()
    )
    rows = []
    for d, donor in enumerate(donors.names):
        total = max(int(counts[d].sum()), 1)
        for t, cell_type in enumerate(CELL_TYPES):
            rows.append(
                {
                    "donor": donor,
                    "condition": donors.condition[donor],
                    "cell_type": cell_type,
                    "n_cells": int(counts[d, t]),
                    "proportion": counts[d, t] / total,
                    "donor_proportion": float(donors.props[d, t]),
                }
            )
    return pd.DataFrame(rows)


def _condition_composition_table(contrast: Sequence[str], means: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"condition": cond, "cell_type": t, "expected_proportion": float(means[c, i])}
            for c, cond in enumerate(contrast)
            for i, t in enumerate(CELL_TYPES)
        ]
    )
