"""ingest_sample and its readers: every public format, real files and hand-made edge cases."""

from __future__ import annotations

import gzip
import json
import tarfile
import warnings
from dataclasses import replace
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.io
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.io.delimited import detect_orientation, read_delimited
from cordatlas.io.ingest import detect_format, ingest_sample, read_sample, split_species
from cordatlas.io.readers import describe_non_counts, harmonise_genes, read_10x_h5, read_10x_mtx
from cordatlas.params import default_params
from cordatlas.plotting.qc import plot_species

META = {"donor": "D1", "condition": "cord_blood", "tissue": "cord_blood", "sex": None}
#: config ``ingest`` with the schema defaults (species human, multiplets 3 MADs, floor 0.1).
INGEST = default_params().ingest
TENX = "fixtures_scanpy_10x_formats"
GEO = "cord_cbmc_cd8gated_dropseq_gse100866"
BARCODES = ["AAACCTGAGCGTAGCA-1", "AAACGGGTCTCTAAGG-1", "AACTCCCAGGTACTCT-1", "ACGCAGCTCAATCACG-1"]


def _dense(adata: ad.AnnData) -> np.ndarray:
    return adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)


def _assert_contract(adata: ad.AnnData, *, sample: str) -> None:
    """The output invariants every later rule relies on."""
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    assert np.array_equal(adata.X.data, np.rint(adata.X.data)) and (adata.X.data > 0).all()
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert list(adata.obs_names) == [f"{sample}:{b}" for b in adata.obs["barcode"]]
    assert (adata.obs["sample"] == sample).all()
    assert "gene_symbol" in adata.var
    assert adata.n_obs == adata.uns["ingest"]["n_cells_kept"]
    json.dumps(adata.uns["ingest"])  # JSON-serialisable provenance


def _counts_frame(n_genes: int = 8, seed: int = 0) -> pd.DataFrame:
    """Genes x cells integer counts with MT- genes and barcode-like cell names."""
    rng = np.random.default_rng(seed)
    genes = ["CD3E", "MS4A1", "LYZ", "GNLY", "MT-CO1", "MT-ND1", "HBB", "NKG7"][:n_genes]
    counts = rng.poisson(3.0, size=(len(genes), len(BARCODES))) + 1
    return pd.DataFrame(counts, index=genes, columns=BARCODES)


# --------------------------------------------------------------------------- real 10x fixtures


def test_10x_mtx_v2_parent_folder_matches_scanpy(shared_data: Path) -> None:
    parent = shared_data / TENX / "1.2.0" / "filtered_gene_bc_matrices"
    adata = ingest_sample(parent, {"sample": "s1", **META}, params=INGEST)
    reference = sc.read_10x_mtx(parent / "hg19_chr21")
    _assert_contract(adata, sample="s1")
    assert adata.uns["ingest"]["format"] == "10x_mtx"
    assert adata.uns["ingest"]["version"] == "v2"
    np.testing.assert_array_equal(_dense(adata), _dense(reference))
    assert list(adata.var_names) == list(reference.var_names)
    assert list(adata.obs["barcode"]) == list(reference.obs_names)
    assert list(adata.var["gene_ids"]) == list(reference.var["gene_ids"])


def test_10x_h5_v2_matches_scanpy(shared_data: Path) -> None:
    path = shared_data / TENX / "1.2.0" / "filtered_gene_bc_matrices_h5.h5"
    adata = ingest_sample(path, {"sample": "s1", **META}, params=INGEST)
    reference = sc.read_10x_h5(path)
    _assert_contract(adata, sample="s1")
    assert adata.uns["ingest"]["version"] == "v2"
    assert adata.uns["ingest"]["genome"] == "hg19_chr21"
    np.testing.assert_array_equal(_dense(adata), _dense(reference))
    assert list(adata.var_names) == list(reference.var_names)


def test_10x_h5_several_genomes_needs_genome(shared_data: Path) -> None:
    path = shared_data / TENX / "1.2.0" / "multiple_genomes.h5"
    with pytest.raises(UserInputError) as info:
        ingest_sample(path, {"sample": "s1", **META}, params=INGEST)
    message = str(info.value)
    assert "'s1'" in message and "another_genome" in message and "hg19_chr21" in message
    assert "`genome`" in message

    adata = read_10x_h5(path, sample="s1", genome="hg19_chr21")
    reference = sc.read_10x_h5(path, genome="hg19_chr21")
    np.testing.assert_array_equal(_dense(adata), _dense(reference))
    with pytest.raises(UserInputError, match="'mm10' is not in"):
        read_10x_h5(path, sample="s1", genome="mm10")


@pytest.mark.parametrize(
    "relative", ["3.0.0/filtered_feature_bc_matrix", "3.0.0/filtered_feature_bc_matrix.h5"]
)
def test_10x_v3_matches_scanpy(shared_data: Path, relative: str) -> None:
    path = shared_data / TENX / relative
    adata = ingest_sample(path, {"sample": "v3", **META}, params=INGEST)
    if path.is_dir():
        reference = sc.read_10x_mtx(path)
    else:
        reference = sc.read_10x_h5(path)
        reference.var_names_make_unique()
    _assert_contract(adata, sample="v3")
    assert adata.shape == (1107, 507)
    assert adata.uns["ingest"]["version"] == "v3"
    np.testing.assert_array_equal(_dense(adata), _dense(reference))
    assert list(adata.var_names) == list(reference.var_names)
    assert list(adata.var["gene_ids"]) == list(reference.var["gene_ids"])
    assert adata.var["gene_ids"].str.startswith("ENSG").all()


def test_tarball_of_mtx_folder(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / TENX / "1.2.0" / "filtered_gene_bc_matrices"
    archive = tmp_path / "pbmc_matrices.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="filtered_gene_bc_matrices")
    assert detect_format(archive, sample="t") == "10x_mtx"
    adata = ingest_sample(archive, {"sample": "t", **META}, params=INGEST)
    reference = sc.read_10x_mtx(folder / "hg19_chr21")
    np.testing.assert_array_equal(_dense(adata), _dense(reference))
    assert adata.uns["ingest"]["mtx_folder"].endswith("filtered_gene_bc_matrices/hg19_chr21")


def _write_v3_h5(path: Path, *, genomes: list[str], types: list[str]) -> np.ndarray:
    """A tiny Cell Ranger 3 h5; returns its dense cells x features matrix."""
    n_features, n_cells = len(types), 3
    dense = np.arange(1, n_features * n_cells + 1).reshape(n_cells, n_features)
    csc = sp.csc_matrix(dense.T)  # features x cells, stored by cell like Cell Ranger
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"], m["indices"], m["indptr"] = csc.data, csc.indices, csc.indptr
        m["shape"] = np.array([n_features, n_cells], dtype=np.int32)
        m["barcodes"] = np.array([b.encode() for b in BARCODES[:n_cells]])
        feats = m.create_group("features")
        feats["id"] = np.array([f"ENSG{i:011d}".encode() for i in range(n_features)])
        feats["name"] = np.array([f"GENE{i}".encode() for i in range(n_features)])
        feats["feature_type"] = np.array([t.encode() for t in types])
        feats["genome"] = np.array([g.encode() for g in genomes])
    return dense


def test_10x_h5_v3_keeps_gene_expression_only(tmp_path: Path) -> None:
    path = tmp_path / "citeseq.h5"
    types = ["Gene Expression"] * 3 + ["Antibody Capture"] * 2
    dense = _write_v3_h5(path, genomes=["GRCh38"] * 3 + [""] * 2, types=types)
    adata = ingest_sample(path, {"sample": "cite", **META}, params=INGEST)
    assert list(adata.var_names) == ["GENE0", "GENE1", "GENE2"]
    assert adata.uns["ingest"]["n_features_dropped_non_gex"] == 2
    np.testing.assert_array_equal(_dense(adata), dense[:, :3])


def test_10x_h5_v3_barnyard_needs_genome(tmp_path: Path) -> None:
    path = tmp_path / "barnyard.h5"
    _write_v3_h5(path, genomes=["GRCh38", "GRCh38", "mm10", "mm10"], types=["Gene Expression"] * 4)
    with pytest.raises(UserInputError, match="GRCh38, mm10"):
        read_10x_h5(path, sample="b")
    adata = read_10x_h5(path, sample="b", genome="mm10")
    assert list(adata.var_names) == ["GENE2", "GENE3"]


def test_10x_mtx_v3_keeps_gene_expression_only(tmp_path: Path) -> None:
    folder = tmp_path / "outs" / "filtered_feature_bc_matrix"
    folder.mkdir(parents=True)
    dense = np.array([[1, 0, 2, 50, 7], [0, 3, 0, 80, 0], [4, 0, 1, 0, 9]])  # cells x features
    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        scipy.io.mmwrite(handle, sp.coo_matrix(dense.T))
    features = pd.DataFrame(
        {
            "id": ["ENSG00000167286", "ENSG00000156738", "ENSG00000090382", "CD3", "CD19"],
            "name": ["CD3D", "MS4A1", "LYZ", "CD3_TotalSeqB", "CD19_TotalSeqB"],
            "type": ["Gene Expression"] * 3 + ["Antibody Capture"] * 2,
        }
    )
    features.to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)
    pd.Series(BARCODES[:3]).to_csv(folder / "barcodes.tsv.gz", header=False, index=False)
    adata = ingest_sample(tmp_path / "outs", {"sample": "cite", **META}, params=INGEST)
    _assert_contract(adata, sample="cite")
    assert adata.uns["ingest"]["version"] == "v3"
    assert adata.uns["ingest"]["n_features_dropped_non_gex"] == 2
    assert list(adata.var_names) == ["CD3D", "MS4A1", "LYZ"]
    assert list(adata.var["gene_ids"]) == list(features["id"][:3])
    np.testing.assert_array_equal(_dense(adata), dense[:, :3])
    reference = sc.read_10x_mtx(folder)  # scanpy drops the antibodies too
    np.testing.assert_array_equal(_dense(adata), _dense(reference))


def test_mtx_folder_missing_files_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no matrix.mtx"):
        read_10x_mtx(tmp_path, sample="empty")


# --------------------------------------------------------------------------- real GEO / h5ad


def test_geo_csv_genes_x_cells_matches_h5ad(shared_data: Path) -> None:
    csv_path = shared_data / GEO / "GSE100866_CD8_merged-RNA_umi.csv.gz"
    result = read_sample(csv_path, {"sample": "cbmc_cd8", **META}, params=INGEST)
    adata = result.adata
    _assert_contract(adata, sample="cbmc_cd8")
    assert adata.shape == (1774, 11757)
    # hg19 only (SOURCE.md): no species prefix, nothing called, no cell dropped
    assert adata.uns["ingest"]["species"]["mixed"] is False and result.species.empty
    assert adata.uns["ingest"]["format"] == "delimited"
    assert adata.uns["ingest"]["orientation"] == "genes_x_cells"
    reference = ad.read_h5ad(shared_data / GEO / "cd8_merged_cord_blood.h5ad")
    assert list(adata.obs["barcode"]) == list(reference.obs_names)
    assert list(adata.var_names) == list(reference.var_names)
    np.testing.assert_array_equal(
        np.asarray(adata.X.sum(axis=1)).ravel(), np.asarray(reference.X.sum(axis=1)).ravel()
    )
    assert (adata.X != reference.X).nnz == 0
    assert adata.obs["sex"].eq("unknown").all() and adata.obs["donor"].eq("D1").all()


def test_h5ad_adult_pbmc_donor_a(shared_data: Path) -> None:
    path = shared_data / "adult_pbmc_10x_donorA_mudan" / "pbmcA_adult.h5ad"
    adata = ingest_sample(
        path, {"sample": "pbmcA", "donor": "A", "condition": "adult"}, params=INGEST
    )
    _assert_contract(adata, sample="pbmcA")
    assert adata.shape == (2896, 13939)
    assert adata.uns["ingest"]["counts_source"] == "X"
    reference = ad.read_h5ad(path)
    assert (adata.X != reference.X).nnz == 0
    assert "input_tissue" in adata.obs and "tissue" not in adata.obs
    assert not adata.obsm and not adata.layers and not adata.varm


def test_h5ad_ica_barcode_pattern(shared_data: Path) -> None:
    path = shared_data / "adult_bm_ica_bm1_50cells_pagoda2" / "ica_bm1_50cells_adult.h5ad"
    adata = ingest_sample(
        path, {"sample": "BM1", **META, "barcode_pattern": "^MantonBM1_"}, params=INGEST
    )
    _assert_contract(adata, sample="BM1")
    assert adata.shape == (50, 33694)
    assert adata.obs_names[0].startswith("BM1:MantonBM1_HiSeq_1-")
    with pytest.raises(UserInputError) as info:
        ingest_sample(
            path, {"sample": "BM2", **META, "barcode_pattern": "^MantonBM2_"}, params=INGEST
        )
    message = str(info.value)
    assert "'BM2'" in message and "^MantonBM2_" in message and "MantonBM1_HiSeq_1-" in message


def test_pbmc68k_reduced_is_refused(shared_data: Path) -> None:
    path = shared_data / "adult_pbmc68k_reduced_scanpy" / "10x_pbmc68k_reduced.h5ad"
    with pytest.raises(UserInputError) as info:
        ingest_sample(path, {"sample": "pbmc68k", **META}, params=INGEST)
    message = str(info.value)
    assert "'pbmc68k'" in message
    assert "X has negative values (min -2.03): looks scaled" in message
    assert ".raw.X has non-integer values" in message and "looks log-normalised" in message
    assert "provide raw UMI counts" in message


# --------------------------------------------------------------------------- delimited text


def test_cells_x_genes_tsv(tmp_path: Path) -> None:
    frame = _counts_frame()
    path = tmp_path / "counts.tsv"
    frame.T.to_csv(path, sep="\t")
    adata = ingest_sample(path, {"sample": "c", **META}, params=INGEST)
    assert adata.uns["ingest"]["orientation"] == "cells_x_genes"
    assert adata.uns["ingest"]["separator"] == "tab"
    assert list(adata.obs["barcode"]) == BARCODES
    np.testing.assert_array_equal(_dense(adata), frame.T.to_numpy())


def test_genes_x_cells_gz_without_corner_label(tmp_path: Path) -> None:
    frame = _counts_frame()
    path = tmp_path / "counts.txt.gz"
    lines = [" ".join(frame.columns)] + [
        " ".join([gene, *map(str, row)])
        for gene, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    pd.Series(lines).to_csv(path, index=False, header=False, compression="gzip")
    adata = read_delimited(path, sample="g")
    assert adata.uns["ingest"]["orientation"] == "genes_x_cells"
    np.testing.assert_array_equal(_dense(adata), frame.T.to_numpy())


def test_orientation_from_mitochondrial_genes(tmp_path: Path) -> None:
    frame = _counts_frame()
    frame.columns = ["cell_1", "cell_2", "cell_3", "cell_4"]
    path = tmp_path / "counts.csv"
    frame.T.to_csv(path)  # cells x genes, cells without barcodes
    adata = ingest_sample(path, {"sample": "m", **META}, params=INGEST)
    assert adata.uns["ingest"]["orientation"] == "cells_x_genes"
    assert "mitochondrial" in adata.uns["ingest"]["orientation_rule"]
    assert list(adata.var_names) == list(frame.index)


def test_orientation_undecidable_asks_for_orientation(tmp_path: Path) -> None:
    frame = _counts_frame()
    frame.index = [f"gene{i}" for i in range(len(frame))]
    frame.columns = ["cell_1", "cell_2", "cell_3", "cell_4"]
    path = tmp_path / "counts.csv"
    frame.to_csv(path)
    with pytest.raises(UserInputError) as info:
        ingest_sample(path, {"sample": "amb", **META}, params=INGEST)
    message = str(info.value)
    assert "'amb'" in message and "`orientation`" in message and "genes_x_cells" in message
    assert "'gene0'" in message and "'cell_1'" in message
    adata = ingest_sample(
        path, {"sample": "amb", **META, "orientation": "genes_x_cells"}, params=INGEST
    )
    assert adata.shape == (4, len(frame))
    assert adata.uns["ingest"]["orientation_rule"] == "set in the sample sheet"


def test_detect_orientation_rules() -> None:
    genes = ["CD3E", "CACNA1A", "GATA1", "MT-CO1"]
    icas = ["MantonBM1_HiSeq_1-AAACCTGAGCGTAGCA-1", "MantonBM1_HiSeq_1-TTTGTCATCTGACCTC-1"]
    assert detect_orientation(genes, icas, sample="x", path="f")[0] == "genes_x_cells"
    assert detect_orientation(icas, genes, sample="x", path="f")[0] == "cells_x_genes"
    dropseq = ["CD8_off_GACCCCCCTTCT", "frozen_pbmc_donor_a_AAACATTGCACTAG"]
    assert detect_orientation(["CACNA1A", "GATA1"], dropseq, sample="x", path="f")[0] == (
        "genes_x_cells"
    )
    with pytest.raises(UserInputError):
        detect_orientation(["CACNA1A", "GATA1"], ["c1", "c2"], sample="x", path="f")


def test_mixed_species_keeps_human_cells_and_genes(tmp_path: Path) -> None:
    genes = ["HUMAN_CD3E", "HUMAN_MT-CO1", "HUMAN_LYZ", "MOUSE_Cd3e", "MOUSE_mt-Co1", "ERCC-00002"]
    human = [[10, 5, 5, 0, 0, 0], [20, 2, 8, 1, 0, 0], [9, 0, 0, 1, 0, 0]]  # 1.0, 0.97, 0.9
    mouse = [[0, 1, 0, 20, 9, 0], [1, 0, 0, 10, 10, 0]]
    mixed = [[5, 0, 0, 5, 0, 0]]  # a doublet: 0.5 human
    counts = np.array(human + mouse + mixed)
    frame = pd.DataFrame(
        counts.T, index=genes, columns=BARCODES + ["GGGCATCCAAGCCGTC-1", "TTTCCTCCAAGCCGTC-1"]
    )
    path = tmp_path / "cbmc.csv.gz"
    frame.to_csv(path)
    result = read_sample(path, {"sample": "cbmc", **META}, params=INGEST)
    adata = result.adata
    _assert_contract(adata, sample="cbmc")
    assert list(adata.obs["barcode"]) == BARCODES[:3]
    assert list(adata.var_names) == ["CD3E", "MT-CO1", "LYZ"]
    assert list(adata.var["gene_symbol"]) == ["CD3E", "MT-CO1", "LYZ"]
    np.testing.assert_array_equal(_dense(adata), counts[:3, :3])
    report = adata.uns["ingest"]["species"]
    assert report["mixed"] is True and report["prefix"] == "HUMAN_"
    assert report["n_cells_dropped"] == 3 and report["n_genes_dropped"] == 3
    assert report["genes_per_prefix"] == {"HUMAN_": 3, "MOUSE_": 2}
    # a 50:50 tie goes to the first species; it is the one multiplet
    assert report["cells_per_species"] == {"human": 4, "mouse": 2}
    assert report["multiplets_per_species"] == {"human": 1, "mouse": 0}
    # 6 cells (< min_cells): one pooled cut, by hand: median 0.0405, MAD 1.4826 * 0.0244
    shares = np.array([0, 1 / 31, 0.1, 1 / 30, 1 / 21, 0.5])
    mad = 1.4826 * np.median(np.abs(shares - np.median(shares)))
    assert report["multiplet_cut"]["human"] == pytest.approx(np.median(shares) + 3 * mad)
    assert "pooled" in report["multiplet_cut_source"]["mouse"]
    table = result.species
    assert list(table.index) == list(frame.columns)
    assert table["multiplet"].tolist() == [False, False, False, False, False, True]
    assert table["kept"].sum() == adata.n_obs
    np.testing.assert_allclose(table["minority_share"], shares)

    mouse_only = ingest_sample(
        path, {"sample": "cbmc", **META}, params=replace(INGEST, species="mouse")
    )
    assert list(mouse_only.var_names) == ["Cd3e", "mt-Co1"]
    # 29/30 and 20/21 of counts on mouse genes; the 50:50 doublet is dropped for both species
    assert list(mouse_only.obs["barcode"]) == [BARCODES[3], "GGGCATCCAAGCCGTC-1"]


def test_species_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    _counts_frame().to_csv(path)
    with pytest.raises(UserInputError, match=r"species_multiplet_min_share 0.6 .*ingest\."):
        ingest_sample(
            path, {"sample": "s", **META}, params=replace(INGEST, species_multiplet_min_share=0.6)
        )
    with pytest.raises(UserInputError, match="species_multiplet_nmads"):
        ingest_sample(
            path, {"sample": "s", **META}, params=replace(INGEST, species_multiplet_nmads=0)
        )


def _barnyard(
    human: np.ndarray,
    mouse: np.ndarray,
    *,
    n_multiplets: int,
    human_cross: tuple[float, float],
    mouse_cross: tuple[float, float],
    seed: int,
) -> tuple[ad.AnnData, np.ndarray]:
    """A barnyard matrix from human and mouse cells' counts (cells x genes, one gene space).

    Each cell's counts on its own genes are its own; a share drawn uniformly from
    `human_cross` (human cells) or `mouse_cross` (mouse cells) of its counts is moved to the
    other species' copy of the same genes (binomial thinning: cross-mapping and ambient RNA).
    Multiplets sum one human and one mouse cell before thinning. Returns (adata, truth per cell:
    "human", "mouse" or "multiplet").
    """
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, [len(human), len(mouse)], size=(n_multiplets, 2))
    own = np.vstack([human, mouse, human[pairs[:, 0]]])
    other = np.vstack([np.zeros_like(human), np.zeros_like(mouse), mouse[pairs[:, 1]]])
    truth = np.array(["human"] * len(human) + ["mouse"] * len(mouse) + ["multiplet"] * n_multiplets)
    share = np.where(
        truth == "mouse",
        rng.uniform(*mouse_cross, len(truth)),
        rng.uniform(*human_cross, len(truth)),
    )
    # human-majority rows: own = human genes; mouse rows: own = mouse genes (swapped below)
    moved_own = rng.binomial(own.astype(np.int64), share[:, None])
    moved_other = rng.binomial(other.astype(np.int64), share[:, None])
    first = own - moved_own + moved_other  # genes of the cell's own species
    second = other - moved_other + moved_own  # genes of the other species
    human_genes = np.where((truth == "mouse")[:, None], second, first)
    mouse_genes = np.where((truth == "mouse")[:, None], first, second)
    n_genes = human.shape[1]
    adata = ad.AnnData(sp.csr_matrix(np.hstack([human_genes, mouse_genes]).astype(np.float32)))
    adata.var_names = [f"HUMAN_G{i}" for i in range(n_genes)] + [
        f"MOUSE_g{i}" for i in range(n_genes)
    ]
    adata.obs_names = [f"c{i}" for i in range(len(truth))]
    return adata, truth


def _synthetic_cells(n_cells: int, n_genes: int, *, median: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    profile = rng.gamma(0.4, 1.0, size=n_genes)
    size = rng.lognormal(np.log(median), 0.5, size=n_cells)
    return rng.poisson(size[:, None] * (profile / profile.sum())[None, :])


def _check_barnyard_calls(table: pd.DataFrame, truth: np.ndarray) -> dict[str, float]:
    called = np.where(table["multiplet"], "multiplet", table["species"])
    return {
        "human_kept": float(table["kept"].to_numpy()[truth == "human"].mean()),
        "mouse_right": float((called[truth == "mouse"] == "mouse").mean()),
        "multiplets_found": float((called[truth == "multiplet"] == "multiplet").mean()),
        "singlets_called_multiplet": float((called[truth != "multiplet"] == "multiplet").mean()),
    }


def test_barnyard_keeps_cross_mapped_human_cells_and_finds_multiplets() -> None:
    """CITE-seq-like barnyard: human cells carry 5-15 % mouse counts, mouse cells 1-4 % human."""
    human = _synthetic_cells(900, 300, median=1500, seed=1)
    mouse = _synthetic_cells(150, 300, median=3000, seed=2)
    adata, truth = _barnyard(
        human, mouse, n_multiplets=40, human_cross=(0.05, 0.15), mouse_cross=(0.01, 0.04), seed=3
    )
    out, report, table = split_species(adata, sample="cbmc", species="human")
    measured = _check_barnyard_calls(table, truth)
    # the former fixed 0.9 purity cut would drop every human cell above 10 % mouse (about half)
    assert (table["minority_share"].to_numpy()[truth == "human"] > 0.1).mean() > 0.3
    assert measured["human_kept"] >= 0.98, measured
    assert measured["mouse_right"] == 1.0, measured
    assert measured["multiplets_found"] >= 0.9, measured
    assert measured["singlets_called_multiplet"] <= 0.01, measured
    assert report["multiplet_cut"]["human"] > 0.15  # the human cells' own spread sets the cut
    assert report["multiplet_cut"]["mouse"] == pytest.approx(0.1)  # clean cells: the floor
    assert out.n_obs == int(table["kept"].sum()) and out.var_names[0] == "G0"
    assert report["cells_per_species"]["human"] + report["cells_per_species"]["mouse"] == len(truth)


def test_barnyard_on_real_cord_counts(shared_data: Path) -> None:
    """Real cord blood Drop-seq cells (GSE100866 CD8) as both species of a planted barnyard.

    The shared GSE100866 files are the hg19-only CD8 experiment (no MOUSE_ genes; SOURCE.md), so
    the mixing is planted: 1,200 real cells stay human with 5-15 % of their counts moved to the
    mouse copies of the same genes, 400 others become mouse cells with 1-4 % moved back, and 60
    multiplets sum a real human and a real mouse cell. Real library sizes and sparsity.
    """
    real = ad.read_h5ad(shared_data / GEO / "cd8_merged_cord_blood.h5ad")
    counts = np.rint(real.X.toarray()).astype(np.int64)
    order = np.random.default_rng(0).permutation(real.n_obs)
    adata, truth = _barnyard(
        counts[order[:1200]],
        counts[order[1200:1600]],
        n_multiplets=60,
        human_cross=(0.05, 0.15),
        mouse_cross=(0.01, 0.04),
        seed=4,
    )
    _, report, table = split_species(adata, sample="cbmc_real", species="human")
    measured = _check_barnyard_calls(table, truth)
    assert measured["human_kept"] >= 0.97, measured
    assert measured["mouse_right"] >= 0.99, measured
    assert measured["multiplets_found"] >= 0.85, measured
    assert report["n_multiplets"] == int(table["multiplet"].sum())


def test_species_figure_is_written(tmp_path: Path) -> None:
    human = _synthetic_cells(200, 100, median=1500, seed=5)
    mouse = _synthetic_cells(60, 100, median=3000, seed=6)
    adata, _ = _barnyard(
        human, mouse, n_multiplets=10, human_cross=(0.05, 0.15), mouse_cross=(0.01, 0.04), seed=7
    )
    _, report, table = split_species(adata, sample="by", species="human")
    plot_species(table, report, sample="by", path=tmp_path / "species.png")
    plot_species(
        pd.DataFrame(),
        {"species": "human", "mixed": False},
        sample="one",
        path=tmp_path / "one.png",
    )
    for name in ("species.png", "one.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_no_species_prefix_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    _counts_frame().to_csv(path)
    adata = ingest_sample(path, {"sample": "s", **META}, params=INGEST)
    assert adata.uns["ingest"]["species"]["mixed"] is False
    assert adata.n_obs == 4 and "MT-CO1" in adata.var_names


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-1.5, "negative values (min -1.5): looks scaled"), (1.53, "non-integer values (e.g. 1.53")],
)
def test_delimited_non_counts_refused(tmp_path: Path, value: float, expected: str) -> None:
    frame = _counts_frame().astype(float)
    frame.iloc[2, 1] = value
    path = tmp_path / "norm.csv"
    frame.to_csv(path)
    with pytest.raises(UserInputError) as info:
        ingest_sample(path, {"sample": "n", **META}, params=INGEST)
    assert expected in str(info.value) and "'n'" in str(info.value)


def test_describe_non_counts_classifies() -> None:
    assert describe_non_counts(sp.csr_matrix(np.array([[0, 3.0], [1.0 + 1e-8, 0]]))) is None
    assert "looks log-normalised" in describe_non_counts(np.log1p(np.array([[3.0, 10.0]])))
    assert "looks normalised (not counts)" in describe_non_counts(np.array([[0.5, 5000.5]]))
    assert "NaN" in describe_non_counts(np.array([[np.nan, 1.0]]))
    assert describe_non_counts(np.array([[-1, 2]])).startswith("has negative values")


def test_describe_non_counts_reads_values_in_blocks_with_the_same_answers(monkeypatch) -> None:
    monkeypatch.setattr("cordatlas.io.readers._CHECK_BLOCK", 3)  # 11 values: 4 blocks
    counts = np.arange(11, dtype=np.float32)
    assert describe_non_counts(counts) is None
    for position, value, expected in [
        (9, 2.5, "non-integer values (e.g. 2.5, max 10): looks log-normalised"),
        (10, -4.0, "negative values (min -4): looks scaled"),
        (7, np.inf, "has 1 NaN or infinite values"),
    ]:
        bad = counts.copy()
        bad[position] = value
        assert expected in describe_non_counts(bad)
    both = counts.copy()
    both[[1, 8]] = np.nan
    assert "has 2 NaN or infinite values" in describe_non_counts(both)


def test_unknown_extension_lists_formats(tmp_path: Path) -> None:
    path = tmp_path / "counts.rds"
    path.write_bytes(b"x")
    with pytest.raises(UserInputError) as info:
        ingest_sample(path, {"sample": "r", **META}, params=INGEST)
    for fmt in ("10x_h5", "10x_mtx", "h5ad", "loom", "delimited"):
        assert fmt in str(info.value)
    with pytest.raises(UserInputError, match="does not exist"):
        ingest_sample(tmp_path / "absent.h5", {"sample": "r", **META}, params=INGEST)
    with pytest.raises(UserInputError, match="'csv' is not one of"):
        ingest_sample(path, {"sample": "r", **META, "format": "csv"}, params=INGEST)


# --------------------------------------------------------------------------- h5ad / loom synthetics


def _synthetic_anndata(seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, size=(4, 5)).astype(np.float32)
    counts[:, 0] += 1
    adata = ad.AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame({"cell_type": ["T", "B", "T", "NK"]}, index=BARCODES),
        var=pd.DataFrame(
            {"gene_symbols": ["CD3E", "MS4A1", "", "CD3E", "MT-CO1"]},
            index=[f"ENSG0000000000{i}" for i in range(5)],
        ),
    )
    return adata


def test_h5ad_ensembl_ids_swapped_for_symbols_and_duplicates_made_unique(tmp_path: Path) -> None:
    source = _synthetic_anndata()
    source.obsm["X_pca"] = np.zeros((4, 2))
    path = tmp_path / "ens.h5ad"
    source.write_h5ad(path)
    adata = ingest_sample(path, {"sample": "e", **META}, params=INGEST)
    _assert_contract(adata, sample="e")
    assert list(adata.var_names) == ["CD3E", "MS4A1", "ENSG00000000002", "CD3E-1", "MT-CO1"]
    assert list(adata.var["gene_symbol"]) == [
        "CD3E",
        "MS4A1",
        "ENSG00000000002",
        "CD3E",
        "MT-CO1",
    ]
    assert list(adata.var["gene_ids"]) == list(source.var_names)
    assert list(adata.obs["input_cell_type"]) == ["T", "B", "T", "NK"]
    assert not adata.obsm
    np.testing.assert_array_equal(_dense(adata), source.X.toarray())


def test_harmonise_genes_scanpy_style() -> None:
    var = harmonise_genes(["A", "A", "A-1", None, "A"], gene_ids=["i0", "i1", "i2", "i3", "i4"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate-name warnings are the point here
        reference = ad.AnnData(
            X=np.zeros((1, 5)), var=pd.DataFrame(index=["A", "A", "A-1", "i3", "A"])
        )
        reference.var_names_make_unique()
    assert list(var.index) == list(reference.var_names) == ["A", "A-2", "A-1", "i3", "A-3"]
    assert var.index.is_unique
    assert list(var["gene_symbol"]) == ["A", "A", "A-1", "i3", "A"]


def test_h5ad_prefers_counts_layer_then_raw(tmp_path: Path) -> None:
    source = _synthetic_anndata()
    counts = source.X.copy()
    source.layers["counts"] = counts
    source.X = sp.csr_matrix(np.log1p(counts.toarray()))
    path = tmp_path / "layer.h5ad"
    source.write_h5ad(path)
    adata = ingest_sample(path, {"sample": "l", **META}, params=INGEST)
    assert adata.uns["ingest"]["counts_source"] == "layers['counts']"
    np.testing.assert_array_equal(_dense(adata), counts.toarray())

    del source.layers["counts"]
    source.raw = ad.AnnData(X=counts, var=source.var)
    source.write_h5ad(path)
    adata = ingest_sample(path, {"sample": "l", **META}, params=INGEST)
    assert adata.uns["ingest"]["counts_source"] == ".raw.X"
    np.testing.assert_array_equal(_dense(adata), counts.toarray())


def test_h5ad_without_counts_names_each_candidate(tmp_path: Path) -> None:
    source = _synthetic_anndata()
    source.layers["counts"] = sp.csr_matrix(source.X.toarray() * 1.5 + 0.25)
    source.X = sp.csr_matrix(source.X.toarray() - 1.0)
    path = tmp_path / "bad.h5ad"
    source.write_h5ad(path)
    with pytest.raises(UserInputError) as info:
        ingest_sample(path, {"sample": "bad", **META}, params=INGEST)
    message = str(info.value)
    assert "'bad'" in message and "layers['counts'] has non-integer values" in message
    assert "X has negative values (min -1)" in message


def test_loom_reads_counts_and_gene_ids(tmp_path: Path) -> None:
    import loompy

    source = _synthetic_anndata()
    path = tmp_path / "cells.loom"
    loompy.create(
        str(path),
        source.X.toarray().T,  # genes x cells on disk
        row_attrs={
            "Gene": np.array(["CD3E", "MS4A1", "LYZ", "CD3E", "MT-CO1"]),
            "Accession": np.array(source.var_names),
        },
        col_attrs={"CellID": np.array(BARCODES), "cluster": np.array(["1", "2", "1", "3"])},
    )
    adata = ingest_sample(path, {"sample": "lo", **META}, params=INGEST)
    _assert_contract(adata, sample="lo")
    assert adata.uns["ingest"]["format"] == "loom"
    assert list(adata.var_names) == ["CD3E", "MS4A1", "LYZ", "CD3E-1", "MT-CO1"]
    assert list(adata.var["gene_ids"]) == list(source.var_names)
    assert list(adata.obs["barcode"]) == BARCODES
    assert list(adata.obs["input_cluster"]) == ["1", "2", "1", "3"]
    np.testing.assert_array_equal(_dense(adata), source.X.toarray())


def test_output_metadata_and_h5ad_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    _counts_frame().to_csv(path)
    metadata = {"donor": "D7", "condition": "adult", "sex": "", "sorted_fraction": float("nan")}
    adata = ingest_sample(path, {"sample": "rt", **metadata}, params=INGEST)
    assert adata.obs["donor"].eq("D7").all() and adata.obs["condition"].eq("adult").all()
    assert adata.obs["sex"].eq("unknown").all() and adata.obs["sorted_fraction"].eq("unknown").all()
    out = tmp_path / "rt.h5ad"
    adata.write_h5ad(out)
    back = ad.read_h5ad(out)
    assert back.uns["ingest"]["n_cells_kept"] == 4
    assert (back.X != adata.X).nnz == 0


def test_duplicate_barcodes_are_a_user_error(tmp_path: Path) -> None:
    frame = _counts_frame()
    frame.columns = [BARCODES[0], BARCODES[0], BARCODES[1], BARCODES[2]]
    path = tmp_path / "dup.csv"
    frame.to_csv(path)
    with pytest.raises(UserInputError, match="duplicated cell barcode"):
        ingest_sample(path, {"sample": "d", **META}, params=INGEST)
