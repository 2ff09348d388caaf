"""Which genes each merged sample measured: gene-id harmonisation, the shared-gene check, the measured-gene contract."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.io.readers import ENSEMBL_RE, SYMBOL_COLUMNS

log = logging.getLogger(__name__)

#: uns key of the merged atlas: {sample: [merged genes that sample did not measure]}; samples
#: that measured every merged gene are left out, so an atlas of one gene universe holds {}.
UNMEASURED_KEY = "unmeasured_genes"
#: var column of the merged atlas: in how many merged samples the gene was measured.
N_MEASURED_COLUMN = "n_samples_measured"
#: A sample whose var_names are at least this fraction Ensembl-like is keyed by Ensembl id
#: (the readers' rule, cordatlas.io.readers._var_from_table).
ENSEMBL_SAMPLE_FRACTION = 0.9
#: Pairwise overlaps listed in full up to this many samples; beyond, only the smallest ones.
_MAX_PAIRS_SHOWN = 10


def sample_id(adata: ad.AnnData) -> str:
    """The sample id of a per-sample AnnData (obs "sample", else ``uns["qc"]["sample"]``)."""
    if adata.n_obs and "sample" in adata.obs:
        return str(adata.obs["sample"].iloc[0])
    return str(adata.uns.get("qc", {}).get("sample", "unnamed"))


# --------------------------------------------------------------------------------------------
# The contract: which merged genes each sample measured
# --------------------------------------------------------------------------------------------


def unmeasured_by_sample(adata: ad.AnnData) -> dict[str, set[str]]:
    """{sample: genes of the merged atlas that sample did not measure} (``uns["unmeasured_genes"]``).

    A gene a sample did not measure is zero-filled there by the outer join: a false zero, not
    an absence of expression. Samples that measured every gene are absent; so is the whole dict
    for an AnnData that never went through :func:`cordatlas.atlas.build.merge_samples`.
    """
    raw = adata.uns.get(UNMEASURED_KEY, {})
    return {
        str(s): {str(g) for g in np.asarray(genes, dtype=object).ravel()}
        for s, genes in raw.items()
    }


def measured_in_all(adata: ad.AnnData) -> np.ndarray:
    """Per var, True where every sample of `adata` measured the gene.

    Only the samples that still have cells in `adata` count (``obs["sample"]``, when present):
    a subset to one sample measures all of that sample's genes. All True when
    ``uns["unmeasured_genes"]`` is absent. Cross-sample analyses (highly variable genes, cluster
    markers, pseudobulk and cell-level DE, signature scores) use only these genes.
    """
    unmeasured = unmeasured_by_sample(adata)
    if "sample" in adata.obs and unmeasured:
        present = set(adata.obs["sample"].astype(str).unique())
        unmeasured = {s: genes for s, genes in unmeasured.items() if s in present}
    if not unmeasured:
        return np.ones(adata.n_vars, dtype=bool)
    missing = set().union(*unmeasured.values())
    return ~adata.var_names.astype(str).isin(list(missing))


def record_measured_genes(merged: ad.AnnData, measured: Mapping[str, set[str]]) -> None:
    """Write ``var["n_samples_measured"]`` and ``uns["unmeasured_genes"]`` from each sample's genes."""
    names = merged.var_names.astype(str)
    n_measured = np.zeros(merged.n_vars, dtype=np.int64)
    unmeasured: dict[str, list[str]] = {}
    for sample, genes in measured.items():
        has = names.isin(list(genes))
        n_measured += has
        if not has.all():
            unmeasured[str(sample)] = [str(g) for g in names[~has]]
    merged.var[N_MEASURED_COLUMN] = n_measured
    merged.uns[UNMEASURED_KEY] = unmeasured


# --------------------------------------------------------------------------------------------
# Harmonising Ensembl-keyed samples to the symbols the others use
# --------------------------------------------------------------------------------------------


def ensembl_fraction(names: Sequence[object]) -> float:
    """Fraction of `names` that look like Ensembl gene ids (ENSG, ENSMUSG, ... optional version)."""
    names = list(names)
    if not names:
        return 0.0
    return sum(bool(ENSEMBL_RE.match(str(n))) for n in names) / len(names)


def _strip_version(gene_id: str) -> str:
    return gene_id.split(".", 1)[0] if ENSEMBL_RE.match(gene_id) else gene_id


def harmonise_gene_ids(
    samples: Sequence[ad.AnnData],
) -> tuple[list[ad.AnnData], dict[str, dict[str, Any]]]:
    """Rename samples keyed by Ensembl id to gene symbols when the other samples use symbols.

    A sample is Ensembl-keyed when at least 90 % of its var_names are Ensembl ids. Each id is
    mapped to a symbol from the sample's own symbol column (``gene_symbols``, ``feature_name``
    ...), else from the ``gene_ids`` column of the symbol-keyed samples (10x readers keep the
    Ensembl id there); versions (``.12``) are ignored. Ids without a symbol keep their id.
    Several ids mapping to one symbol are collapsed by summing their counts.

    Returns
    -------
    The samples (renamed copies where mapped, the others unchanged) and, per mapped sample, a
    JSON-serialisable record: where symbols came from, ids mapped/unmapped, genes collapsed.

    Raises
    ------
    UserInputError
        An Ensembl-keyed sample none of whose ids can be mapped.
    """
    keyed = {
        sample_id(a): ensembl_fraction(a.var_names) >= ENSEMBL_SAMPLE_FRACTION for a in samples
    }
    if all(keyed.values()) or not any(keyed.values()):
        return list(samples), {}
    lookup = _symbols_of_other_samples([a for a in samples if not keyed[sample_id(a)]])
    out: list[ad.AnnData] = []
    records: dict[str, dict[str, Any]] = {}
    for adata in samples:
        name = sample_id(adata)
        if not keyed[name]:
            out.append(adata)
            continue
        symbols, source = _symbols_for(adata, lookup)
        n_mapped = int(sum(s is not None for s in symbols))
        if n_mapped == 0:
            raise UserInputError(
                f"sample {name!r}: its {adata.n_vars} gene names are Ensembl ids "
                f"(e.g. {', '.join(map(str, adata.var_names[:3]))}) while the other samples use "
                "gene symbols, and neither a symbol column of its own (var "
                f"{', '.join(SYMBOL_COLUMNS)}) nor the other samples' gene_ids map any of them; "
                "give this sample's file a gene symbol column (or symbols as gene names) and rerun."
            )
        renamed = _rename_and_collapse(adata, symbols)
        records[name] = {
            "from": "Ensembl ids",
            "symbol_source": source,
            "ids": int(adata.n_vars),
            "ids_mapped": n_mapped,
            "ids_unmapped_kept": int(adata.n_vars - n_mapped),
            "genes_after": int(renamed.n_vars),
            "ids_collapsed_by_summing": int(adata.n_vars - renamed.n_vars),
        }
        log.warning(
            "merge: sample %s had Ensembl ids as gene names; mapped: %s", name, records[name]
        )
        out.append(renamed)
    return out, records


def _symbols_of_other_samples(samples: Sequence[ad.AnnData]) -> dict[str, str]:
    """Ensembl id (no version) -> symbol, from the symbol-keyed samples' ``gene_ids`` columns."""
    lookup: dict[str, str] = {}
    for adata in samples:
        if "gene_ids" not in adata.var:
            continue
        for symbol, gene_id in zip(
            adata.var_names.astype(str), adata.var["gene_ids"].astype(str), strict=True
        ):
            if ENSEMBL_RE.match(gene_id):
                lookup.setdefault(_strip_version(gene_id), symbol)
    return lookup


def _symbols_for(adata: ad.AnnData, lookup: Mapping[str, str]) -> tuple[list[str | None], str]:
    """Each var's symbol (None where unknown) and where the symbols came from."""
    own = next(
        (
            c
            for c in SYMBOL_COLUMNS
            if c in adata.var and ensembl_fraction(adata.var[c].dropna().astype(str)) < 0.5
        ),
        None,
    )
    ids = [_strip_version(str(g)) for g in adata.var_names]
    symbols: list[str | None] = [lookup.get(i) for i in ids]
    if own is not None:
        values = adata.var[own].astype(object).to_numpy()
        for i, value in enumerate(values):
            text = "" if value is None or pd.isna(value) else str(value).strip()
            if text and text.lower() not in {"nan", "none"} and not ENSEMBL_RE.match(text):
                symbols[i] = text
    source = f"var column {own!r}" if own is not None else ""
    if lookup:
        source = f"{source}, then " if source else ""
        source += "the other samples' gene_ids"
    return symbols, source


def _rename_and_collapse(adata: ad.AnnData, symbols: Sequence[str | None]) -> ad.AnnData:
    """A copy with var_names the symbols (ids where None); genes sharing a name summed."""
    ids = adata.var_names.astype(str)
    names = pd.Index([s if s is not None else i for s, i in zip(symbols, ids, strict=True)])
    codes, unique = pd.factorize(names)
    indicator = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)),
        shape=(len(codes), len(unique)),
    )
    counts = sp.csr_matrix(adata.X, dtype=np.float32) @ indicator
    first_id = pd.Series(ids).groupby(codes).first().to_numpy()
    var = pd.DataFrame({"gene_ids": first_id}, index=pd.Index(unique.astype(str), dtype=object))
    out = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32), obs=adata.obs.copy(), var=var)
    out.uns = dict(adata.uns)
    return out


# --------------------------------------------------------------------------------------------
# Enough shared genes
# --------------------------------------------------------------------------------------------


def check_shared_genes(
    measured: Mapping[str, set[str]], *, min_shared_genes: int, stage: str = "before the merge"
) -> int:
    """The number of genes every sample measured; refuse fewer than `min_shared_genes`.

    Raises
    ------
    UserInputError
        Naming each sample's gene count, the overall and pairwise overlaps, and what to do.
    """
    shared = set.intersection(*(set(g) for g in measured.values())) if measured else set()
    if len(shared) >= min_shared_genes:
        return len(shared)
    counts = ", ".join(f"{s} {len(g)}" for s, g in measured.items())
    raise UserInputError(
        f"only {len(shared)} genes are measured in every sample {stage} (config "
        f"atlas.min_shared_genes: {min_shared_genes}); genes per sample: {counts}; "
        f"pairwise overlap: {_pairwise_overlaps(measured)}. Check that every sample names genes "
        "the same way (HGNC symbols, or Ensembl ids with a symbol column), comes from the same "
        "species and is a whole-transcriptome matrix; drop the sample that shares few genes "
        "from the sheet, or lower atlas.min_shared_genes if a targeted panel is intended."
    )


def _pairwise_overlaps(measured: Mapping[str, set[str]]) -> str:
    pairs = [
        (len(set(measured[a]) & set(measured[b])), a, b)
        for a, b in itertools.combinations(measured, 2)
    ]
    if not pairs:
        return "(one sample)"
    pairs.sort()
    shown = pairs if len(pairs) <= _MAX_PAIRS_SHOWN else pairs[:_MAX_PAIRS_SHOWN]
    text = "; ".join(f"{a} & {b} {n}" for n, a, b in shown)
    return text if len(shown) == len(pairs) else f"{text} (the {len(shown)} smallest shown)"
