"""The merge's gene contract: id harmonisation, shared-gene checks, which sample measured which gene, and the analyses that honour it."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from cordatlas.atlas.build import (
    measured_in_all,
    merge_samples,
    normalise,
    normalise_to_file,
    select_highly_variable_genes,
    unmeasured_by_sample,
)
from cordatlas.atlas.markers import find_markers
from cordatlas.compare.cell_level import cell_level_de
from cordatlas.compare.pseudobulk import aggregate_pseudobulk
from cordatlas.errors import UserInputError
from cordatlas.genesets.scoring import score_gene_sets
from cordatlas.params import Contrast, default_params

COMPARISON = default_params().comparison
#: The schema's default (config atlas.min_shared_genes).
MIN_SHARED = default_params().atlas.min_shared_genes


def make_sample(
    name: str,
    genes: list[str],
    *,
    n_cells: int = 60,
    seed: int = 0,
    gene_ids: list[str] | None = None,
    mean: float | np.ndarray = 2.0,
) -> ad.AnnData:
    """Poisson counts of one sample as QC writes it (obs sample, uns qc)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(mean, size=(n_cells, len(genes))).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.var_names = genes
    if gene_ids is not None:
        adata.var["gene_ids"] = gene_ids
    adata.obs_names = [f"{name}:{i}" for i in range(n_cells)]
    adata.obs["sample"] = name
    adata.obs["donor"] = name
    adata.obs["condition"] = "cord_blood" if name.startswith("CB") else "adult"
    adata.uns["qc"] = {"sample": name, "dropped_sample": False}
    return adata


def ensembl(i: int) -> str:
    return f"ENSG{i:011d}"


GENES = [f"GENE{i}" for i in range(40)]
IDS = [ensembl(i) for i in range(40)]


# --------------------------------------------------------------------------------------------
# Gene ids: Ensembl-keyed samples renamed to the others' symbols
# --------------------------------------------------------------------------------------------


def test_ensembl_sample_is_mapped_through_the_other_samples_gene_ids():
    symbols = make_sample("AD1", GENES, gene_ids=IDS)
    # versioned ids, and one id the symbol-keyed sample does not know
    ids = [f"{g}.7" for g in IDS[:30]] + [ensembl(999)]
    cord = make_sample("CB1", ids, seed=1)
    merged, record = merge_samples(
        [symbols, cord], gene_join="outer", min_cells_per_gene=0, min_shared_genes=20
    )
    mapped = record["gene_ids_harmonised"]["CB1"]
    assert mapped["ids"] == 31 and mapped["ids_mapped"] == 30 and mapped["ids_unmapped_kept"] == 1
    assert "gene_ids" in mapped["symbol_source"]
    cb = merged[merged.obs["sample"] == "CB1"]
    # cord counts landed on the symbols, unchanged
    assert np.array_equal(cb[:, GENES[:30]].X.toarray(), cord.X[:, :30].toarray())
    assert ensembl(999) in merged.var_names  # kept under its id, measured in CB1 only
    assert merged.var.loc[ensembl(999), "n_samples_measured"] == 1
    assert record["genes_measured_in_all_samples"] == 30


def test_ids_of_one_symbol_are_summed_and_the_own_symbol_column_wins():
    adult = make_sample("AD1", GENES, gene_ids=IDS)
    cord = make_sample("CB1", IDS[:25], seed=2)
    # the sample's own symbols: ids 0 and 1 are both GENE0 (e.g. a gene on two contigs)
    own = ["GENE0", "GENE0"] + GENES[2:25]
    cord.var["gene_symbols"] = own
    merged, record = merge_samples(
        [adult, cord], gene_join="outer", min_cells_per_gene=0, min_shared_genes=20
    )
    mapped = record["gene_ids_harmonised"]["CB1"]
    assert mapped["symbol_source"].startswith("var column 'gene_symbols'")
    assert mapped["ids_collapsed_by_summing"] == 1 and mapped["genes_after"] == 24
    cb = merged[merged.obs["sample"] == "CB1"]
    expected = cord.X[:, 0].toarray() + cord.X[:, 1].toarray()
    assert np.array_equal(cb[:, "GENE0"].X.toarray(), expected)
    assert list(merged.uns["unmeasured_genes"]["CB1"]) == ["GENE1", *GENES[25:]]


def test_unmappable_ensembl_sample_is_refused_by_name():
    adult = make_sample("AD1", GENES)  # symbols, but no gene_ids to map through
    cord = make_sample("CB1", IDS, seed=1)
    with pytest.raises(UserInputError, match=r"sample 'CB1'.*Ensembl ids.*gene symbol column"):
        merge_samples([adult, cord], gene_join="outer", min_cells_per_gene=0, min_shared_genes=10)


def test_samples_all_keyed_by_ensembl_are_left_as_they_are():
    a = make_sample("AD1", IDS)
    b = make_sample("CB1", IDS, seed=1)
    merged, record = merge_samples(
        [a, b], gene_join="outer", min_cells_per_gene=0, min_shared_genes=40
    )
    assert record["gene_ids_harmonised"] == {} and list(merged.var_names) == IDS


def test_real_10x_ids_map_onto_the_symbols_of_the_same_genes(shared_data: Path):
    """A 10x folder read by symbol (cordatlas reader) and by Ensembl id (scanpy) merge gene by gene."""
    from cordatlas.io.readers import read_10x_mtx

    folder = shared_data / "fixtures_scanpy_10x_formats/3.0.0/filtered_feature_bc_matrix"
    by_symbol = read_10x_mtx(folder, sample="AD1")
    by_id = sc.read_10x_mtx(folder, var_names="gene_ids")
    by_id.var = by_id.var.iloc[:, :0]  # no symbol column: ids only
    for name, adata in (("AD1", by_symbol), ("CB1", by_id)):
        adata.obs_names = [f"{name}:{b}" for b in adata.obs_names]
        adata.obs["sample"] = name
        adata.uns["qc"] = {"sample": name, "dropped_sample": False}
    merged, record = merge_samples(
        [by_symbol, by_id], gene_join="outer", min_cells_per_gene=0, min_shared_genes=100
    )
    assert record["gene_ids_harmonised"]["CB1"]["ids_mapped"] == by_id.n_vars
    assert merged.n_vars == by_symbol.n_vars and merged.uns["unmeasured_genes"] == {}
    halves = [merged[merged.obs["sample"] == s].X.toarray() for s in ("AD1", "CB1")]
    assert np.array_equal(halves[0], halves[1])


# --------------------------------------------------------------------------------------------
# Enough shared genes, before and after the merge
# --------------------------------------------------------------------------------------------


def test_too_few_shared_genes_is_refused_with_counts_and_overlaps():
    a = make_sample("AD1", GENES)
    b = make_sample("AD2", GENES[:30], seed=1)
    c = make_sample("CB1", GENES[27:] + [f"OTHER{i}" for i in range(20)], seed=2)
    with pytest.raises(UserInputError) as error:
        merge_samples([a, b, c], gene_join="outer", min_cells_per_gene=0, min_shared_genes=20)
    message = str(error.value)
    assert "only 3 genes are measured in every sample" in message
    assert "AD1 40, AD2 30, CB1 33" in message
    assert "AD1 & AD2 30" in message and "AD2 & CB1 3" in message and "AD1 & CB1 13" in message
    assert "atlas.min_shared_genes" in message


def test_merge_refuses_to_write_too_few_expressed_shared_genes():
    a = make_sample("AD1", GENES)
    b = make_sample("CB1", GENES, seed=1)
    b.X = sp.csr_matrix(b.X.shape, dtype=np.float32)  # measured but never detected
    counts = a.X.toarray()
    counts[:, 10:] = 0  # only 10 genes detected anywhere
    a.X = sp.csr_matrix(counts)
    with pytest.raises(UserInputError, match=r"10 genes measured in every sample remain of 10"):
        merge_samples([a, b], gene_join="outer", min_cells_per_gene=3, min_shared_genes=20)


def test_merge_refuses_an_atlas_without_cells():
    a = make_sample("AD1", GENES, n_cells=0)
    b = make_sample("CB1", GENES, n_cells=0)
    with pytest.raises(UserInputError, match="no cells"):
        merge_samples([a, b], gene_join="outer", min_cells_per_gene=0, min_shared_genes=10)


def test_default_min_shared_genes_is_a_few_hundred():
    assert 200 <= MIN_SHARED <= 2000
    assert default_params().atlas.gene_join == "outer"


# --------------------------------------------------------------------------------------------
# The contract: n_samples_measured, unmeasured_genes, measured_in_all, unmeasured_by_sample
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def lacking() -> ad.AnnData:
    """Two cord and two adult samples; CB2 did not measure IGHD (outer join: zero-filled)."""
    rng = np.random.default_rng(5)
    genes = ["IGHD", "IGHM", "CD79A"] + [f"G{i}" for i in range(57)]
    parts = []
    for i, name in enumerate(["CB1", "CB2", "AD1", "AD2"]):
        own = [g for g in genes if not (name == "CB2" and g == "IGHD")]
        # gene means spread over 0.3-12 counts per cell, so the mean-variance trend is defined
        means = np.linspace(0.3, 12.0, len(genes))[[genes.index(g) for g in own]]
        adata = make_sample(name, own, n_cells=40, seed=10 + i, mean=means)
        # IGHD is high where measured, in every group: only the false zeros of CB2 differ
        if "IGHD" in own:
            counts = adata.X.toarray()
            counts[:, own.index("IGHD")] = rng.poisson(8, size=40)
            adata.X = sp.csr_matrix(counts)
        adata.obs["cell_type"] = np.where(np.arange(40) < 20, "B_naive", "T_cell")
        parts.append(adata)
    merged, _ = merge_samples(parts, gene_join="outer", min_cells_per_gene=0, min_shared_genes=50)
    merged.obs["cell_type"] = merged.obs["cell_type"].astype("category")
    return merged


def test_merge_records_which_sample_measured_which_gene(lacking: ad.AnnData):
    assert lacking.var.loc["IGHD", "n_samples_measured"] == 3
    assert (lacking.var["n_samples_measured"].drop("IGHD") == 4).all()
    assert {s: list(g) for s, g in lacking.uns["unmeasured_genes"].items()} == {"CB2": ["IGHD"]}
    assert unmeasured_by_sample(lacking) == {"CB2": {"IGHD"}}
    shared = measured_in_all(lacking)
    assert shared.dtype == bool and not shared[lacking.var_names.get_loc("IGHD")]
    assert shared.sum() == lacking.n_vars - 1
    # a subset without CB2 measures IGHD everywhere
    assert measured_in_all(lacking[lacking.obs["sample"] != "CB2"]).all()
    assert measured_in_all(lacking[lacking.obs["sample"] == "CB1"]).all()


def test_contract_survives_h5ad_round_trip(lacking: ad.AnnData, tmp_path: Path):
    lacking.write_h5ad(tmp_path / "merged.h5ad")
    back = ad.read_h5ad(tmp_path / "merged.h5ad")
    assert unmeasured_by_sample(back) == {"CB2": {"IGHD"}}
    assert np.array_equal(measured_in_all(back), measured_in_all(lacking))
    assert back.var["n_samples_measured"].tolist() == lacking.var["n_samples_measured"].tolist()


def test_inner_join_records_an_empty_contract_that_round_trips(tmp_path: Path):
    a = make_sample("AD1", GENES)
    b = make_sample("CB1", GENES[:30], seed=1)
    merged, record = merge_samples(
        [a, b], gene_join="inner", min_cells_per_gene=0, min_shared_genes=20
    )
    assert merged.uns["unmeasured_genes"] == {} and record["genes_unmeasured_per_sample"] == {}
    assert (merged.var["n_samples_measured"] == 2).all()
    merged.write_h5ad(tmp_path / "inner.h5ad")
    back = ad.read_h5ad(tmp_path / "inner.h5ad")
    assert unmeasured_by_sample(back) == {} and measured_in_all(back).all()
    del back.uns["unmeasured_genes"]  # an AnnData that never went through the merge
    assert measured_in_all(back).all() and unmeasured_by_sample(back) == {}


def test_outer_join_keeps_each_samples_own_genes():
    a = make_sample("AD1", GENES)
    b = make_sample("CB1", GENES[:30], seed=1)
    merged, record = merge_samples(
        [a, b], gene_join="outer", min_cells_per_gene=0, min_shared_genes=20
    )
    assert merged.n_vars == 40 and record["genes_measured_in_all_samples"] == 30
    assert record["genes_unmeasured_per_sample"] == {"CB1": 10}
    assert set(merged.uns["unmeasured_genes"]["CB1"]) == set(GENES[30:])


# --------------------------------------------------------------------------------------------
# Every cross-sample analysis ignores genes not measured everywhere
# --------------------------------------------------------------------------------------------


def test_hvg_never_picks_a_gene_some_sample_did_not_measure(lacking: ad.AnnData):
    # the outer join's zeros make IGHD the most variable gene when it is allowed to compete
    normalise(lacking)
    raw = lacking.copy()
    sc.pp.highly_variable_genes(raw, flavor="seurat_v3", n_top_genes=5, layer="counts")
    assert raw.var.loc["IGHD", "highly_variable"]
    select_highly_variable_genes(lacking, n_top_genes=5, batch_key=None)
    assert not lacking.var.loc["IGHD", "highly_variable"]
    assert lacking.var["highly_variable"].sum() == 5
    assert lacking.uns["hvg_params"]["genes_not_measured_in_every_sample"] == 1


def test_markers_skip_genes_some_sample_did_not_measure(lacking: ad.AnnData):
    normalise(lacking)
    # a cluster of CB2's cells: IGHD's false zeros would make it CB2's top (negative) marker
    groups = np.where(lacking.obs["sample"] == "CB2", "c0", "c1")
    lacking.obs["leiden"] = pd.Categorical(groups)
    markers = find_markers(lacking, groupby="leiden", n_genes=lacking.n_vars)
    assert "IGHD" not in set(markers["gene"])
    assert set(markers["gene"]) == set(lacking.var_names) - {"IGHD"}


def test_pseudobulk_leaves_out_genes_some_sample_did_not_measure(lacking: ad.AnnData):
    counts = lacking.X.copy()
    normalise(lacking)  # the atlas keeps the merge's counts in layers["counts"]
    pseudobulk = aggregate_pseudobulk(lacking, COMPARISON)
    assert "IGHD" not in pseudobulk.var_names and pseudobulk.n_vars == lacking.n_vars - 1
    assert pseudobulk.uns["pseudobulk"]["genes_not_measured_in_every_sample"] == 1
    # the other genes are summed as before
    cells = ((lacking.obs["cell_type"] == "B_naive") & (lacking.obs["donor"] == "AD1")).to_numpy()
    gene = lacking.var_names.get_loc("IGHM")
    assert pseudobulk["B_naive__AD1", "IGHM"].X.sum() == counts[cells][:, gene].sum()


def test_cell_level_de_does_not_test_genes_some_sample_did_not_measure(lacking: ad.AnnData):
    normalise(lacking)
    results, notes = cell_level_de(
        lacking, COMPARISON, Contrast("cord_blood", "adult"), cell_type="B_naive"
    )
    assert "IGHD" not in set(results["gene"]) and "IGHM" in set(results["gene"])
    assert "measured in every sample" in notes[1]


def test_scores_drop_genes_some_sample_did_not_measure(lacking: ad.AnnData, caplog):
    normalise(lacking)
    sets = {"B_cell": ["IGHD", "IGHM", "CD79A"]}
    with caplog.at_level(logging.INFO, logger="cordatlas.genesets.scoring"):
        result = score_gene_sets(lacking, sets, min_genes={"B_cell": 2})
    assert result.used["B_cell"] == ["IGHM", "CD79A"]
    assert result.missing["B_cell"] == ["IGHD"] and result.unmeasured["B_cell"] == ["IGHD"]
    assert "IGHD" in caplog.text
    # one sample scored alone uses every gene it measured
    one = lacking[lacking.obs["sample"] == "CB1"].copy()
    alone = score_gene_sets(one, sets, min_genes={"B_cell": 2})
    assert alone.used["B_cell"] == ["IGHD", "IGHM", "CD79A"] and alone.unmeasured["B_cell"] == []


# --------------------------------------------------------------------------------------------
# Highly variable genes never crash on valid input
# --------------------------------------------------------------------------------------------


def _profiled(name: str, n_cells: int, seed: int, n_genes: int = 600) -> ad.AnnData:
    """Gamma-Poisson counts with varied gene means and cell depths (loess fits these)."""
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.5, 2.0, size=n_genes)
    counts = rng.poisson(mu * rng.gamma(2.0, 0.5, size=(n_cells, 1)))
    return _from_counts(name, counts)


def _tied(name: str, n_cells: int, seed: int, n_genes: int = 600) -> ad.AnnData:
    """Most genes with exactly one count in the sample: one shared mean, a singular loess fit."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_cells, n_genes))
    counts[rng.integers(0, n_cells, n_genes), np.arange(n_genes)] = 1
    counts[:, :20] += rng.poisson(3, size=(n_cells, 20))
    return _from_counts(name, counts)


def _from_counts(name: str, counts: np.ndarray) -> ad.AnnData:
    adata = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)))
    adata.var_names = [f"g{i}" for i in range(counts.shape[1])]
    adata.obs_names = [f"{name}:{i}" for i in range(counts.shape[0])]
    adata.obs["sample"] = name
    adata.uns["qc"] = {"sample": name, "dropped_sample": False}
    return adata


def _hvg(parts: list[ad.AnnData], n_top: int = 100) -> ad.AnnData:
    merged, _ = merge_samples(parts, gene_join="outer", min_cells_per_gene=0, min_shared_genes=50)
    normalise(merged)
    select_highly_variable_genes(merged, n_top_genes=n_top, batch_key="sample")
    return merged


def test_hvg_pools_small_batches_and_keeps_the_others_batched(caplog):
    parts = [_profiled("A", 300, 1), _profiled("C", 300, 2), _profiled("S1", 30, 3)]
    parts.append(_profiled("S2", 30, 4))
    with caplog.at_level(logging.WARNING, logger="cordatlas.atlas.build"):
        merged = _hvg(parts)
    params = merged.uns["hvg_params"]
    assert params["strategy"] == "batched_with_pooled_group"
    assert params["pooled_batches"] == ["S1", "S2"] and params["batch_key_used"] == "sample"
    assert params["cells_per_batch"] == {"A": 300, "C": 300, "S1": 30, "S2": 30}
    assert "S1 (30 cells), S2 (30 cells)" in caplog.text
    assert merged.var["highly_variable"].sum() == 100
    assert merged.var["highly_variable_nbatches"].max() <= 3  # A, C and the pooled group


def test_hvg_falls_back_to_all_cells_when_a_batch_cannot_be_fitted(caplog):
    parts = [_profiled("A", 300, 1), _profiled("C", 300, 2), _tied("B1", 200, 3)]
    parts.append(_tied("B2", 200, 4))
    # precondition: scanpy's batched fit crashes on this valid input
    merged, _ = merge_samples(parts, gene_join="outer", min_cells_per_gene=0, min_shared_genes=50)
    with pytest.raises(ValueError, match="l2fit|condition number|singularit"):
        sc.pp.highly_variable_genes(
            merged, flavor="seurat_v3", n_top_genes=100, batch_key="sample", subset=False
        )
    with caplog.at_level(logging.WARNING, logger="cordatlas.atlas.build"):
        merged = _hvg(parts)
    params = merged.uns["hvg_params"]
    assert params["strategy"] == "unbatched" and params["flavor"] == "seurat_v3"
    assert params["batch_key"] == "sample" and params["batch_key_used"] == ""
    assert (
        params["attempts"][0].startswith("seurat_v3 on batches")
        and "failed" in params["attempts"][0]
    )
    assert "seurat_v3 on A alone: ok" in params["attempts"]
    assert any(a.startswith("seurat_v3 on B1 alone: loess fit failed") for a in params["attempts"])
    assert "B1 (200 cells), B2 (200 cells) alone" in caplog.text
    assert "ranked over all 1000 cells" in caplog.text
    assert merged.var["highly_variable"].sum() == 100


def test_hvg_uses_dispersion_when_loess_fails_on_all_cells(caplog):
    with caplog.at_level(logging.WARNING, logger="cordatlas.atlas.build"):
        merged = _hvg([_tied("B1", 200, 3), _tied("B2", 200, 4)])
    params = merged.uns["hvg_params"]
    assert params["strategy"] == "unbatched_dispersion" and params["flavor"] == "seurat"
    assert "dispersion-based 'seurat' flavour" in caplog.text
    assert merged.var["highly_variable"].sum() >= 100


@pytest.mark.parametrize(
    "parts",
    [
        lambda: [_profiled("A", 300, 1), _profiled("C", 300, 2), _profiled("S1", 30, 3)],
        lambda: [_tied("B1", 200, 3), _tied("B2", 200, 4)],  # the dispersion fallback
    ],
    ids=["batched", "dispersion"],
)
def test_genes_ranked_on_merged_counts_then_normalised_in_chunks_equal_the_in_memory_order(
    parts, tmp_path: Path
):
    """normalise_select_genes' order (HVG on the counts, then the file by chunks) changes nothing."""
    merged, _ = merge_samples(parts(), gene_join="outer", min_cells_per_gene=0, min_shared_genes=50)
    in_memory = merged.copy()
    normalise(in_memory)
    select_highly_variable_genes(in_memory, n_top_genes=100, batch_key="sample")
    select_highly_variable_genes(merged, n_top_genes=100, batch_key="sample")
    normalise_to_file(merged, tmp_path / "normalised.h5ad", chunk_cells=37)
    written = ad.read_h5ad(tmp_path / "normalised.h5ad")
    pd.testing.assert_frame_equal(written.var, in_memory.var)
    assert written.obs.equals(in_memory.obs)
    assert (written.X != in_memory.X).nnz == 0 and written.X.dtype == in_memory.X.dtype
    assert (written.layers["counts"] != in_memory.layers["counts"]).nnz == 0
    assert set(written.uns) == set(in_memory.uns)
    assert written.uns["normalisation"] == in_memory.uns["normalisation"]
    assert written.uns["hvg_params"]["strategy"] == in_memory.uns["hvg_params"]["strategy"]
    assert list(written.uns["hvg_params"]["attempts"]) == in_memory.uns["hvg_params"]["attempts"]


def test_hvg_outcome_round_trips_through_h5ad(tmp_path: Path):
    merged = _hvg([_profiled("A", 300, 1), _profiled("C", 300, 2), _profiled("S1", 30, 3)])
    merged.write_h5ad(tmp_path / "hvg.h5ad")
    back = ad.read_h5ad(tmp_path / "hvg.h5ad")
    assert back.uns["hvg_params"]["strategy"] == "batched_with_pooled_group"
    assert list(back.uns["hvg_params"]["pooled_batches"]) == ["S1"]


def _real_sample(path: Path, name: str, *, n_cells: int, seed: int, mask=None) -> ad.AnnData:
    adata = ad.read_h5ad(path)
    if mask is not None:
        adata = adata[mask(adata)].copy()
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(adata.n_obs, min(n_cells, adata.n_obs), replace=False))
    adata = adata[keep].copy()
    out = ad.AnnData(
        X=sp.csr_matrix(adata.X, dtype=np.float32),
        obs=pd.DataFrame(index=[f"{name}:{b}" for b in adata.obs_names]),
        var=pd.DataFrame(index=adata.var_names.copy()),
    )
    out.obs["sample"] = name
    out.uns["qc"] = {"sample": name, "dropped_sample": False}
    return out


def test_hvg_on_the_real_four_sample_sheet_does_not_crash(shared_data: Path, caplog):
    """Cord Drop-seq (two sort gates) + adult 10x PBMC + adult ICA marrow, ~250 cells each.

    scanpy's seurat_v3 fit by sample crashes on it (`_loess ... reciprocal condition number`);
    every one of these low-depth batches fails alone.
    """
    cord = shared_data / "cord_cbmc_cd8gated_dropseq_gse100866/cd8_merged_cord_blood.h5ad"

    def gates(*names):
        return lambda a: a.obs["sort_gate"].astype(str).isin(names).to_numpy()

    parts = [
        _real_sample(cord, "CB_off_low", n_cells=250, seed=0, mask=gates("CD8_off", "CD8_low")),
        _real_sample(
            cord, "CB_int_high", n_cells=250, seed=0, mask=gates("CD8_intermediate", "CD8_high")
        ),
        _real_sample(
            shared_data / "adult_pbmc_10x_donorA_mudan/pbmcA_adult.h5ad",
            "PBMC_A",
            n_cells=250,
            seed=0,
        ),
        _real_sample(
            shared_data / "adult_bm_ica_bm1_50cells_pagoda2/ica_bm1_50cells_adult.h5ad",
            "BM1",
            n_cells=250,
            seed=0,
        ),
    ]
    merged, record = merge_samples(
        parts, gene_join="outer", min_cells_per_gene=3, min_shared_genes=MIN_SHARED
    )
    assert record["genes_measured_in_all_samples"] > 5000
    normalise(merged)
    crash = merged.copy()
    with pytest.raises(ValueError, match="condition number|singularit"):
        sc.pp.highly_variable_genes(
            crash, flavor="seurat_v3", n_top_genes=2000, layer="counts", batch_key="sample"
        )
    with caplog.at_level(logging.WARNING, logger="cordatlas.atlas.build"):
        select_highly_variable_genes(merged, n_top_genes=2000, batch_key="sample")
    params = merged.uns["hvg_params"]
    assert params["strategy"] in {"batched_with_pooled_group", "unbatched"}
    assert params["cells_per_batch"] == {
        "BM1": 50,
        "CB_int_high": 250,
        "CB_off_low": 250,
        "PBMC_A": 250,
    }
    assert "loess fit failed" in params["attempts"][0]
    assert "PBMC_A (250 cells)" in caplog.text
    hvg = merged.var["highly_variable"].to_numpy()
    assert hvg.sum() == 2000 and not (hvg & ~measured_in_all(merged)).any()


def test_cells_per_gene_by_row_chunks_counts_detected_cells_only():
    """The merge's gene filter counts cells with a count > 0 (a stored zero is not detected)."""
    from cordatlas.atlas.build import _cells_per_gene

    rng = np.random.default_rng(5)
    counts = sp.csr_matrix(rng.poisson(0.3, size=(53, 17)).astype(np.float32))
    counts.data[::7] = 0  # explicit zeros kept in the structure
    expected = np.asarray((counts.toarray() > 0).sum(axis=0)).ravel()
    for chunk_cells in (53, 10, 1):
        np.testing.assert_array_equal(_cells_per_gene(counts, chunk_cells), expected)
