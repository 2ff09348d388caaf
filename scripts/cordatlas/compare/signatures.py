"""Gene-signature scores per cell, summarised per donor and tested cord vs adult beside a sample-handling control."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.compare.donor_stats import bh_adjust, compare_groups, replicate_table
from cordatlas.errors import UserInputError
from cordatlas.genesets.curated import merge_resources, read_yaml, validate_header
from cordatlas.genesets.scoring import score_gene_sets

log = logging.getLogger(__name__)

#: Allowed set names: they become table values, column names and possibly file names.
SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Keys of a library file and of each set (unknown keys are errors, not ignored).
LIBRARY_KEYS = ("version", "species", "description", "gene_sets")
REQUIRED_LIBRARY_KEYS = ("version", "gene_sets")
SET_KEYS = ("genes", "category", "expected_direction", "cell_types", "role", "citations", "notes")
REQUIRED_SET_KEYS = ("genes", "category", "expected_direction", "role", "citations")

CATEGORIES = (
    "ontogeny",
    "stemness",
    "potency",
    "immune_regulation",
    "cytotoxicity",
    "innate",
    "proliferation",
    "repair",
    "interferon",
    "control",
    "user",
)
#: Expected direction in the condition (cord blood) relative to the reference (adult).
DIRECTIONS = ("up", "down", "conflicting")
ROLES = ("biological", "control")

#: Name of the per-cell potency column added by :func:`score_signatures`.
POTENCY = "potency"
#: Library-like metadata of scores that are not gene sets of the library.
DERIVED_SCORES: dict[str, dict[str, Any]] = {
    POTENCY: {
        "genes": [],
        "category": "potency",
        "expected_direction": None,
        "cell_types": None,
        "role": "biological",
        "citations": [
            "Gulati GS et al. 2020. Single-cell transcriptional diversity is a hallmark of "
            "developmental potential. Science 367:405-411. doi:10.1126/science.aax0249. "
            "PMID 31974247"
        ],
        "notes": "CytoTRACE-style gene-counts signature score, rank-scaled to [0, 1] over all "
        "cells (1 = most potent); see cordatlas.compare.signatures.potency_score",
    }
}

#: Default minimum number of a set's genes found in the data for the set to be scored; a set
#: with fewer genes in total is scored when all of them are found.
DEFAULT_MIN_GENES = 3
#: Default name of the control set shown beside each biological contrast.
DEFAULT_CONTROL = "stress_processing_delay"

#: Columns of :func:`test_signatures`' result.
RESULT_COLUMNS = [
    "cell_type",
    "signature",
    "category",
    "role",
    "expected_direction",
    "observed_direction",
    "concordance",
    "n_condition",
    "n_reference",
    "mean_condition",
    "mean_reference",
    "difference",
    "se",
    "t",
    "df",
    "pvalue",
    "padj",
    "covariates",
    "control_difference",
    "control_padj",
    "evidence",
    "citations",
]


# ============================================================================================
# The library: reading, validating, merging
# ============================================================================================
def load_gene_sets(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a gene-signature library: YAML (see config/signatures.yaml) or GMT.

    Parameters
    ----------
    path
        ``.yaml``/``.yml``: ``version``, optional ``species`` and ``description``, and
        ``gene_sets`` (name -> entry with ``genes``, ``category``, ``expected_direction``,
        optional ``cell_types``, ``role``, ``citations``, optional ``notes``).
        ``.gmt``: one set per line, ``name<TAB>description<TAB>gene<TAB>gene...`` (MSigDB's
        format); its sets get category ``user``, role ``biological`` and no expectation.

    Returns
    -------
    dict
        ``{"version", "species", "description", "source", "gene_sets": {name: entry}}`` with
        every entry holding all :data:`SET_KEYS` (``cell_types`` None = all cell types),
        duplicate genes removed, sets in file order.

    Raises
    ------
    UserInputError
        The file is missing, of another type, unreadable, or a set or field is invalid (the
        message names the file, the set and the field).
    """
    source = Path(path)
    if not source.is_file():
        raise UserInputError(
            f"gene-signature library {str(source)!r} not found; set signatures.library (or "
            "signatures.extra_sets) to an existing .yaml or .gmt file such as "
            "config/signatures.yaml"
        )
    suffix = source.suffix.lower()
    if suffix == ".gmt":
        return _read_gmt(source)
    if suffix not in (".yaml", ".yml"):
        raise UserInputError(
            f"gene-signature library {str(source)!r}: unknown file type {suffix!r}; use a YAML "
            "library (.yaml/.yml, format of config/signatures.yaml) or a GMT file (.gmt)"
        )
    content = read_yaml(source, what="gene-signature library", hint="")
    library = validate_gene_sets(content, origin=str(source))
    library["source"] = str(source)
    return library


def _read_gmt(source: Path) -> dict[str, Any]:
    where = f"gene-signature library {str(source)!r}"
    sets: dict[str, dict[str, Any]] = {}
    with open(source, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
            name = fields[0]
            genes = [g for g in fields[2:] if g]
            if len(fields) < 3 or not genes:
                raise UserInputError(
                    f"{where}, line {number}: set {name!r} has no genes; a GMT line is "
                    "name<TAB>description<TAB>gene<TAB>gene... (tab-separated)"
                )
            _check_set_name(name, where=f"{where}, line {number}")
            if name in sets:
                raise UserInputError(
                    f"{where}, line {number}: set {name!r} appears twice; give each set one line"
                )
            sets[name] = {
                "genes": list(dict.fromkeys(genes)),
                "category": "user",
                "expected_direction": None,
                "cell_types": None,
                "role": "biological",
                "citations": [fields[1]] if fields[1] else [],
                "notes": "",
            }
    if not sets:
        raise UserInputError(f"{where} holds no gene set; add lines name<TAB>description<TAB>genes")
    return {
        "version": "gmt",
        "species": None,
        "description": f"gene sets read from {source.name}",
        "source": str(source),
        "gene_sets": sets,
    }


def _check_set_name(name: Any, *, where: str) -> None:
    if not isinstance(name, str) or not SET_NAME.match(name):
        raise UserInputError(
            f"{where}: gene-set name {name!r} is not allowed; use letters, digits, '_', '.' and "
            "'-', starting with a letter or digit (e.g. 'fetal_programme')"
        )
    if name in DERIVED_SCORES:
        raise UserInputError(
            f"{where}: gene-set name {name!r} is reserved for the score the workflow computes "
            "itself; rename the set"
        )


def validate_gene_sets(content: Any, *, origin: str = "gene-signature library") -> dict[str, Any]:
    """Validate a library already read into Python objects (format: see `load_gene_sets`).

    Parameters
    ----------
    content
        The parsed YAML document (or a library dict returned by `load_gene_sets`).
    origin
        Where it came from, quoted in error messages (a file path).

    Returns
    -------
    dict
        The normalised library, as returned by `load_gene_sets` (``source`` = `origin`).
    """
    where = f"gene-signature library {origin!r}"
    if isinstance(content, Mapping):
        content = {k: v for k, v in content.items() if k != "source"}
    header = validate_header(
        content,
        where=where,
        keys=LIBRARY_KEYS,
        required=REQUIRED_LIBRARY_KEYS,
        entries_key="gene_sets",
        entries_hint=f"set names to entries with {list(REQUIRED_SET_KEYS)}",
        example="config/signatures.yaml",
    )
    gene_sets = header["entries"]
    entries = {}
    for name, entry in gene_sets.items():
        _check_set_name(name, where=where)
        entries[str(name)] = _validate_set(str(name), entry, where=where)
    return {
        "version": header["version"],
        "species": header["species"],
        "description": header["description"],
        "source": origin,
        "gene_sets": entries,
    }


def _string_list(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) and v.strip() for v in values)


def _validate_set(name: str, entry: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise UserInputError(
            f"{where}: gene set {name!r} must be a mapping with {list(REQUIRED_SET_KEYS)}, got "
            f"{type(entry).__name__}"
        )
    unknown = sorted(set(map(str, entry)) - set(SET_KEYS))
    if unknown:
        raise UserInputError(
            f"{where}: gene set {name!r} has unknown field(s) {unknown}; allowed fields are "
            f"{list(SET_KEYS)}"
        )
    missing = [k for k in REQUIRED_SET_KEYS if k not in entry]
    if missing:
        raise UserInputError(
            f"{where}: gene set {name!r} lacks field(s) {missing}; every set needs "
            f"{list(REQUIRED_SET_KEYS)} (expected_direction may be null)"
        )
    genes = entry["genes"]
    if not _string_list(genes) or not genes:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'genes' must be a non-empty list of gene symbols; "
            f"got {genes!r}"
        )
    category = entry["category"]
    if category not in CATEGORIES:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'category' is {category!r}; use one of "
            f"{list(CATEGORIES)}"
        )
    direction = entry["expected_direction"]
    if direction is not None and direction not in DIRECTIONS:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'expected_direction' is {direction!r}; use one of "
            f"{list(DIRECTIONS)} or null (no published claim)"
        )
    role = entry["role"]
    if role not in ROLES:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'role' is {role!r}; use one of {list(ROLES)}"
        )
    if role == "control" and direction is not None:
        raise UserInputError(
            f"{where}: gene set {name!r} is a control but has expected_direction {direction!r}; "
            "a control carries no biological expectation: set expected_direction to null"
        )
    cell_types = entry.get("cell_types")
    if cell_types is not None and (not _string_list(cell_types) or not cell_types):
        raise UserInputError(
            f"{where}: gene set {name!r} field 'cell_types' must be null (all cell types) or a "
            f"non-empty list of cell-type names; got {cell_types!r}"
        )
    citations = entry["citations"]
    if citations is None:
        citations = []
    if not _string_list(citations):
        raise UserInputError(
            f"{where}: gene set {name!r} field 'citations' must be a list of citations "
            f"(author, year, journal, DOI); got {citations!r}"
        )
    if direction is not None and not citations:
        raise UserInputError(
            f"{where}: gene set {name!r} expects {direction!r} but cites no source; add the "
            "publication(s) behind the expectation to 'citations' or set expected_direction to "
            "null"
        )
    notes = entry.get("notes") or ""
    if not isinstance(notes, str):
        raise UserInputError(f"{where}: gene set {name!r} field 'notes' must be a string")
    return {
        "genes": list(dict.fromkeys(g.strip() for g in genes)),
        "category": category,
        "expected_direction": direction,
        "cell_types": None if cell_types is None else [c.strip() for c in cell_types],
        "role": role,
        "citations": [c.strip() for c in citations],
        "notes": " ".join(notes.split()),
    }


def merge_gene_sets(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Extend or override a library with a user's own sets.

    Parameters
    ----------
    base
        The curated library (from `load_gene_sets`).
    extra
        A user library (YAML or GMT, from `load_gene_sets`). A set whose name is in `base`
        replaces that set whole; other sets are added after the base's.

    Returns
    -------
    dict
        The merged library; its version is ``"<base version>+<extra version>"`` so results record
        that the curated library was modified.
    """
    base = validate_gene_sets(dict(base), origin=str(base.get("source", "base library")))
    extra = validate_gene_sets(dict(extra), origin=str(extra.get("source", "extra library")))
    merged = merge_resources(base, extra, entries_key="gene_sets", what="gene-signature library")
    merged["source"] = f"{base['source']}+{extra['source']}"
    return merged


def load_library(
    path: str | os.PathLike[str], extra_paths: Sequence[str | os.PathLike[str]] = ()
) -> dict[str, Any]:
    """The shipped library with the user's YAML or GMT files merged in, in the order given."""
    library = load_gene_sets(path)
    for extra in extra_paths:
        library = merge_gene_sets(library, load_gene_sets(extra))
    return library


def gene_lists(library: Mapping[str, Any]) -> dict[str, list[str]]:
    """Set name -> genes, for tests that need only the gene lists (enrichment)."""
    return {name: list(entry["genes"]) for name, entry in _gene_sets(library).items()}


def _gene_sets(library: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The library's sets, from a full library or a bare ``{name: entry}`` mapping."""
    if "gene_sets" in library and isinstance(library["gene_sets"], Mapping):
        return validate_gene_sets(dict(library), origin=str(library.get("source", "library")))[
            "gene_sets"
        ]
    return validate_gene_sets(
        {"version": "unversioned", "gene_sets": dict(library)}, origin="library"
    )["gene_sets"]


def set_metadata(library: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A set's entry, or the metadata of a derived score (potency), or a neutral entry."""
    sets = _gene_sets(library)
    if name in sets:
        return sets[name]
    if name in DERIVED_SCORES:
        return DERIVED_SCORES[name]
    return {
        "genes": [],
        "category": "user",
        "expected_direction": None,
        "cell_types": None,
        "role": "biological",
        "citations": [],
        "notes": "",
    }


def expectation_for(entry: Mapping[str, Any], cell_type: str) -> str | None:
    """The set's expected direction in `cell_type`, or None where the claim does not apply."""
    cell_types = entry.get("cell_types")
    if cell_types is not None and cell_type not in cell_types:
        return None
    return entry.get("expected_direction")


# ============================================================================================
# Scoring cells
# ============================================================================================
def potency_score(
    adata: ad.AnnData,
    *,
    n_signature_genes: int = 200,
    counts_layer: str | None = "counts",
) -> pd.Series:
    """CytoTRACE-style developmental-potential score per cell, rank-scaled to [0, 1].

    Gulati et al. 2020 (Science 367:405) showed that the number of genes a cell expresses
    ("gene counts") falls with differentiation, and that the genes whose expression best tracks
    gene counts (the gene-counts signature) give a more robust score than gene counts alone.
    Here, as a simplified CytoTRACE (no kNN smoothing or regression step):

    1. gene counts = genes detected (count > 0) per cell, from raw counts;
    2. the `n_signature_genes` genes whose log-normalised expression (X) has the highest
       Pearson correlation with gene counts across all cells form the signature;
    3. score = mean log-normalised expression of the signature genes;
    4. the score is rank-scaled over all cells to [0, 1] (ties share their mean rank;
       1 = most potent, 0 = least).

    Limits: gene counts, and with them this score, also rise with sequencing depth, capture
    efficiency and cell size, so samples sequenced deeper or with another technology (10x v2
    vs v3) look "more potent", and so do doublets. Scores are ranks within the cells scored
    together: compare cell types within a study, not values across studies. Between-condition
    differences within a cell type should be read beside sample depth and technology (see the
    design findings; a condition aliased with technology cannot be separated from it). The score is no measure of functional stemness.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised expression in X.
    n_signature_genes
        Size of the gene-counts signature (CytoTRACE's default: 200); capped at the number of
        genes that vary.
    counts_layer
        Layer with raw counts for gene counts; when absent, genes detected are counted from X
        (log-normalisation keeps zeros at zero, so the count is the same).

    Returns
    -------
    pd.Series
        ``potency`` per cell (index obs_names); ``attrs["signature_genes"]`` lists the genes
        used and ``attrs["gene_counts"]`` holds the genes detected per cell.
    """
    if n_signature_genes < 1:
        raise UserInputError(f"n_signature_genes must be >= 1, got {n_signature_genes}")
    n_cells = adata.n_obs
    if n_cells == 0:
        return pd.Series([], index=adata.obs_names.copy(), name=POTENCY, dtype=np.float64)
    counts = (
        adata.layers[counts_layer]
        if counts_layer is not None and counts_layer in adata.layers
        else adata.X
    )
    if sp.issparse(counts):
        gene_counts = np.asarray((counts > 0).sum(axis=1)).ravel().astype(np.float64)
    else:
        gene_counts = (np.asarray(counts) > 0).sum(axis=1).astype(np.float64)
    x = adata.X
    # Pearson correlation per gene without densifying X: cov(x, g) / (sd_x sd_g)
    g_centred = gene_counts - gene_counts.mean()
    g_sd = float(np.sqrt((g_centred**2).mean()))
    if sp.issparse(x):
        mean_x = np.asarray(x.mean(axis=0)).ravel()
        mean_x2 = np.asarray(x.multiply(x).mean(axis=0)).ravel()
        cov = np.asarray(x.T @ g_centred).ravel() / n_cells
    else:
        dense = np.asarray(x, dtype=np.float64)
        mean_x = dense.mean(axis=0)
        mean_x2 = (dense**2).mean(axis=0)
        cov = dense.T @ g_centred / n_cells
    sd_x = np.sqrt(np.clip(mean_x2 - mean_x**2, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / (sd_x * g_sd)
    corr[~np.isfinite(corr) | (sd_x == 0)] = -np.inf
    usable = int(np.isfinite(corr).sum())
    if usable == 0 or g_sd == 0:
        log.warning("potency: gene counts or expression do not vary; every cell gets 0.5")
        series = pd.Series(0.5, index=adata.obs_names.copy(), name=POTENCY, dtype=np.float64)
        series.attrs["signature_genes"] = []
        series.attrs["gene_counts"] = gene_counts
        return series
    n_top = min(n_signature_genes, usable)
    top = np.argsort(-corr, kind="stable")[:n_top]
    block = x[:, top]
    raw = np.asarray(block.mean(axis=1)).ravel() if sp.issparse(block) else block.mean(axis=1)
    ranks = pd.Series(np.asarray(raw, dtype=np.float64)).rank(method="average").to_numpy()
    scaled = (ranks - 1.0) / (n_cells - 1.0) if n_cells > 1 else np.full(n_cells, 0.5)
    series = pd.Series(scaled, index=adata.obs_names.copy(), name=POTENCY, dtype=np.float64)
    series.attrs["signature_genes"] = [str(g) for g in adata.var_names[top]]
    series.attrs["gene_counts"] = gene_counts
    return series


def score_signatures(
    adata: ad.AnnData,
    library: Mapping[str, Any],
    *,
    seed: int = 0,
    min_genes: int = DEFAULT_MIN_GENES,
    ctrl_size: int = 50,
    n_bins: int = 25,
    gene_symbols: str | None = None,
    potency: bool = True,
    n_potency_genes: int = 200,
    counts_layer: str | None = "counts",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every cell for every gene set (scanpy's `score_genes`), plus potency.

    A cell's score for a set is the mean log-normalised expression of the set's genes minus
    the mean of control genes drawn at random from the same expression bins (Satija et al.
    2015; ``sc.tl.score_genes``), seeded, so scores are reproducible. Cell-cycle S and G2/M
    scores come from the library's ``cell_cycle_S`` and ``cell_cycle_G2M`` sets scored the same
    way. Genes absent from the data are dropped and listed.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised expression in X (raw counts in X are refused).
    library
        From `load_gene_sets` / `merge_gene_sets` (or a bare ``{name: entry}`` mapping).
    seed
        random_state of the control-gene draw.
    min_genes
        A set is scored when at least this many of its genes are in the data, or, for a set
        with fewer genes in total, when all of them are (one- and two-gene sets such as
        BCL11A or HBG1/HBG2 are deliberate).
    ctrl_size, n_bins
        Control genes per bin and number of expression bins (scanpy's defaults: 50, 25).
    gene_symbols
        var column with gene symbols when var_names are not symbols.
    potency
        Add the ``potency`` column (`potency_score`).
    n_potency_genes, counts_layer
        Passed to `potency_score`.

    Returns
    -------
    scores
        Cells (adata.obs_names) x scored sets (library order), then ``potency``.
    report
        One row per set (and potency): ``signature``, ``category``, ``role``, ``n_genes``,
        ``n_found``, ``genes_used``, ``genes_missing`` (comma-separated), ``scored``,
        ``reason``.

    Raises
    ------
    UserInputError
        X holds raw counts, or no set could be scored.
    """
    sets = _gene_sets(library)
    # a set smaller than min_genes is scored when all its genes are present
    needed = {name: max(1, min(min_genes, len(e["genes"]))) for name, e in sets.items()}
    result = score_gene_sets(
        adata,
        {name: entry["genes"] for name, entry in sets.items()},
        min_genes=needed,
        seed=seed,
        ctrl_size=ctrl_size,
        n_bins=n_bins,
        gene_symbols=gene_symbols,
    )
    symbols = result.symbols
    columns: dict[str, np.ndarray] = {n: result.scores[n].to_numpy() for n in result.scores}
    rows = []
    for name, entry in sets.items():
        genes = entry["genes"]
        used, missing = result.used[name], result.missing[name]
        scored = name in columns
        reason = ""
        if not scored:
            reason = (
                f"only {len(used)} of {len(genes)} genes in the data (< {needed[name]})"
                if adata.n_obs > 0
                else "no cells"
            )
            log.warning("gene set %s not scored: %s (missing: %s)", name, reason, missing)
        rows.append(
            {
                "signature": name,
                "category": entry["category"],
                "role": entry["role"],
                "n_genes": len(genes),
                "n_found": len(used),
                "genes_used": ",".join(used),
                "genes_missing": ",".join(missing),
                "scored": bool(scored),
                "reason": reason,
            }
        )
    if not columns:
        raise UserInputError(
            f"no gene set has enough of its genes among the data's {adata.n_vars} genes (e.g. "
            f"{list(symbols[:3])}); check that genes are HGNC symbols, or pass gene_symbols= the "
            "var column that holds them"
        )
    if potency:
        series = potency_score(adata, n_signature_genes=n_potency_genes, counts_layer=counts_layer)
        columns[POTENCY] = series.to_numpy()
        genes_used = series.attrs.get("signature_genes", [])
        rows.append(
            {
                "signature": POTENCY,
                "category": "potency",
                "role": "biological",
                "n_genes": n_potency_genes,
                "n_found": len(genes_used),
                "genes_used": ",".join(genes_used),
                "genes_missing": "",
                "scored": True,
                "reason": "gene-counts signature (CytoTRACE-style), rank-scaled over all cells",
            }
        )
    scores = pd.DataFrame(columns, index=adata.obs_names.copy())
    return scores, pd.DataFrame(rows)


# ============================================================================================
# Per donor and cell type
# ============================================================================================
#: Columns of :func:`summarise_by_replicate`' result.
SUMMARY_COLUMNS = ["cell_type", "replicate", "condition", "signature", "n_cells", "mean_score"]


def read_replicate_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written from :func:`summarise_by_replicate` (ids stay text: donor "001")."""
    text = {c: str for c in ("cell_type", "replicate", "condition", "signature")}
    return pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)


def summarise_by_replicate(
    scores: pd.DataFrame,
    obs: pd.DataFrame,
    *,
    cell_type_key: str = "cell_type",
    replicate_key: str = "donor",
    condition_key: str = "condition",
    min_cells: int = 10,
    exclude: Sequence[str] = ("unassigned",),
) -> pd.DataFrame:
    """Mean score per replicate (donor), cell type and signature: the unit of the test.

    Parameters
    ----------
    scores
        Cells x signatures (from `score_signatures`), index = cell ids in `obs`.
    obs
        Cell metadata with `cell_type_key`, `replicate_key` and `condition_key`; each replicate
        must have one condition (checked with `donor_stats.replicate_table`).
    min_cells
        A replicate x cell type with fewer cells is left out: its mean would be too noisy to
        stand for the donor.
    exclude
        Cell-type labels never summarised (unassigned clusters).

    Returns
    -------
    pd.DataFrame
        Long table with :data:`SUMMARY_COLUMNS`: ``replicate`` and ``condition`` hold the values
        of `replicate_key` and `condition_key`. Cell types in order of appearance in `obs`
        (categorical order when categorical), signatures in `scores` column order.
    """
    if min_cells < 1:
        raise UserInputError(f"min_cells must be >= 1, got {min_cells}")
    missing_keys = [k for k in (cell_type_key, replicate_key, condition_key) if k not in obs]
    if missing_keys:
        raise UserInputError(
            f"obs lacks column(s) {missing_keys} needed to summarise signature scores per "
            f"{replicate_key} and cell type; available: {sorted(map(str, obs.columns))}"
        )
    missing_cells = scores.index.difference(obs.index)
    if len(missing_cells):
        raise ValueError(
            f"{len(missing_cells)} scored cells are not in obs (e.g. {missing_cells[0]!r}); "
            "summarise the scores of the same AnnData"
        )
    if scores.empty or scores.shape[1] == 0:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    obs = obs.loc[scores.index]
    design = replicate_table(obs, replicate_key=replicate_key, condition_key=condition_key)
    cell_type = obs[cell_type_key].astype(str)
    replicate = obs[replicate_key].astype(str)
    keep = ~cell_type.isin(set(map(str, exclude)))
    if isinstance(obs[cell_type_key].dtype, pd.CategoricalDtype):
        order = [str(c) for c in obs[cell_type_key].cat.categories]
    else:
        order = list(dict.fromkeys(cell_type))
    frame = scores.loc[keep.to_numpy()].copy()
    frame["_cell_type"] = cell_type[keep].to_numpy()
    frame["_replicate"] = replicate[keep].to_numpy()
    grouped = frame.groupby(["_cell_type", "_replicate"], sort=False, observed=True)
    means = grouped.mean()
    sizes = grouped.size()
    means = means.loc[sizes[sizes >= min_cells].index]
    if means.empty:
        log.warning("no replicate x cell type has %d or more cells", min_cells)
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    long = means.reset_index().melt(
        id_vars=["_cell_type", "_replicate"], var_name="signature", value_name="mean_score"
    )
    long = long.rename(columns={"_cell_type": "cell_type", "_replicate": "replicate"})
    long["n_cells"] = [
        int(sizes[(c, r)]) for c, r in zip(long["cell_type"], long["replicate"], strict=True)
    ]
    long["condition"] = design.loc[long["replicate"], condition_key].to_numpy()
    rank_type = {c: i for i, c in enumerate(order)}
    rank_sig = {s: i for i, s in enumerate(scores.columns)}
    long = long.sort_values(
        ["cell_type", "signature", "replicate"],
        key=lambda s: (
            s.map(rank_type)
            if s.name == "cell_type"
            else (s.map(rank_sig) if s.name == "signature" else s)
        ),
        kind="stable",
    )
    return long[SUMMARY_COLUMNS].reset_index(drop=True)


# ============================================================================================
# Donor-level test beside the control
# ============================================================================================
def _direction(value: float) -> str:
    if value is None or not np.isfinite(value) or value == 0:
        return "none"
    return "up" if value > 0 else "down"


def _format_p(value: float) -> str:
    return "NA" if value is None or not np.isfinite(value) else f"{value:.2g}"


def test_signatures(
    summary: pd.DataFrame,
    design: pd.DataFrame,
    library: Mapping[str, Any],
    *,
    contrast: Sequence[str],
    covariates: Sequence[str] = (),
    condition_key: str = "condition",
    min_replicates: int = 2,
    control: str | None = DEFAULT_CONTROL,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Test each signature in each cell type, condition vs reference, donors as the unit.

    Per cell type, the replicate means of every signature (from `summarise_by_replicate`)
    are modelled as intercept + condition + covariates with `donor_stats.compare_groups` (OLS
    t-test; difference = condition - reference, adjusted for the covariates). P-values are
    Benjamini-Hochberg adjusted over all signature x cell-type tests together (the control
    included).

    Each row is compared with the library's expectation where the set's ``cell_types``
    include the cell type (or are null):

    - ``agree``: padj < `alpha` and the difference has the expected sign;
    - ``disagree``: padj < `alpha` and the opposite sign;
    - ``not_significant``: an expectation but padj >= `alpha`;
    - ``contested``: the literature conflicts (``expected_direction: conflicting``); the
      observed direction and padj are reported, not scored;
    - ``no_expectation``: no claim for this set in this cell type;
    - ``not_testable``: fewer than `min_replicates` replicates in a group (or no residual
      degrees of freedom), so no p-value.

    The control set's difference and padj in the same cell type sit on every row
    (``control_difference``, ``control_padj``) so each biological contrast is read beside
    sample handling; ``evidence`` says it in words and warns when the control differs too.

    Parameters
    ----------
    summary
        Long table from `summarise_by_replicate`.
    design
        Replicates (index) x `condition_key` and `covariates` (`donor_stats.replicate_table`).
    library
        The library the scores came from (expectations, categories, citations).
    contrast
        (condition, reference), e.g. ("cord_blood", "adult").
    covariates
        Columns of `design` to adjust for (dropped per test where unusable; the
        ``covariates`` column says which were used).
    min_replicates
        Minimum replicates per group for a test.
    control
        Name of the control set; None for no control columns.
    alpha
        Significance level on padj for the concordance call.

    Returns
    -------
    pd.DataFrame
        :data:`RESULT_COLUMNS`, one row per cell type x signature, cell types in `summary`
        order.
    """
    condition, reference = contrast
    if summary.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks column(s) {missing}; pass summarise_by_replicate's table")
    if condition_key not in design.columns:
        raise UserInputError(
            f"design lacks the condition column {condition_key!r}; build it with "
            "donor_stats.replicate_table"
        )
    levels = set(design[condition_key].astype(str))
    absent = [c for c in (condition, reference) if c not in levels]
    if absent:
        raise UserInputError(
            f"contrast level(s) {absent} are not values of {condition_key!r} (found "
            f"{sorted(levels)}); set comparison.contrast to two of them"
        )
    sets = _gene_sets(library)
    if control is not None and control not in set(summary["signature"]):
        log.warning(
            "control set %r is not among the scored signatures; control columns are empty",
            control,
        )
    design = design.copy()
    design.index = design.index.astype(str)
    frames = []
    for cell_type in dict.fromkeys(summary["cell_type"]):
        part = summary[summary["cell_type"] == cell_type]
        values = part.pivot(index="replicate", columns="signature", values="mean_score")
        order = list(dict.fromkeys(part["signature"]))
        values = values[order]
        values.index = values.index.astype(str)
        result = compare_groups(
            values,
            design,
            contrast=(condition, reference),
            condition_key=condition_key,
            covariates=covariates,
            min_replicates=min_replicates,
        )
        result.insert(0, "cell_type", cell_type)
        frames.append(result)
    table = pd.concat(frames, ignore_index=True).rename(columns={"feature": "signature"})
    table["padj"] = bh_adjust(table["pvalue"].to_numpy(dtype=float))

    control_rows = (
        table[table["signature"] == control].set_index("cell_type")
        if control is not None
        else table.iloc[0:0].set_index("cell_type")
    )
    out = []
    for row in table.to_dict("records"):
        name = row["signature"]
        entry = sets.get(name) or set_metadata(library, name)
        expected = expectation_for(entry, row["cell_type"])
        observed = _direction(row["difference"])
        testable = np.isfinite(row["pvalue"]) if row["pvalue"] is not None else False
        significant = bool(testable and row["padj"] < alpha)
        if not testable:
            concordance = "not_testable"
        elif expected is None:
            concordance = "no_expectation"
        elif expected == "conflicting":
            concordance = "contested"
        elif not significant:
            concordance = "not_significant"
        else:
            concordance = "agree" if observed == expected else "disagree"
        if row["cell_type"] in control_rows.index:
            ctrl = control_rows.loc[row["cell_type"]]
            control_difference, control_padj = float(ctrl["difference"]), float(ctrl["padj"])
        else:
            control_difference, control_padj = np.nan, np.nan
        row.update(
            category=entry["category"],
            role=entry["role"],
            expected_direction=expected,
            observed_direction=observed,
            concordance=concordance,
            control_difference=control_difference,
            control_padj=control_padj,
            citations="; ".join(entry.get("citations", [])),
        )
        row["evidence"] = _evidence(
            row, contrast=(condition, reference), control=control, alpha=alpha
        )
        out.append(row)
    return pd.DataFrame(out, columns=RESULT_COLUMNS)


def _evidence(
    row: Mapping[str, Any], *, contrast: Sequence[str], control: str | None, alpha: float
) -> str:
    """One sentence a reader can quote: the numbers, the expectation, the control beside it."""
    condition, reference = contrast
    parts = []
    if row["concordance"] == "not_testable":
        parts.append(
            f"not testable: {int(row['n_condition'])} {condition} and {int(row['n_reference'])} "
            f"{reference} replicates with enough cells"
        )
    else:
        parts.append(
            f"{condition} {row['mean_condition']:.3g} vs {reference} {row['mean_reference']:.3g} "
            f"(difference {row['difference']:+.3g}, padj {_format_p(row['padj'])}, "
            f"{int(row['n_condition'])} vs {int(row['n_reference'])} replicates)"
        )
    expected = row["expected_direction"]
    if expected is None:
        parts.append("no published expectation in this cell type")
    elif expected == "conflicting":
        parts.append(
            f"published sources conflict (see notes); the data point {row['observed_direction']}"
        )
    else:
        parts.append(f"expected {expected} -> {row['concordance']}")
    if control is not None and row["signature"] != control:
        if np.isfinite(row["control_difference"]):
            parts.append(
                f"{control} control here: difference {row['control_difference']:+.3g}, padj "
                f"{_format_p(row['control_padj'])}"
            )
            if np.isfinite(row["control_padj"]) and row["control_padj"] < alpha:
                parts.append("caution: the sample-handling control also differs in this cell type")
        else:
            parts.append(f"{control} control not available in this cell type")
    return "; ".join(parts)


# pytest would otherwise collect this public function as a test when it is imported by name
test_signatures.__test__ = False  # type: ignore[attr-defined]
