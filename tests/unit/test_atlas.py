"""Merging samples and building the atlas on small seeded data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from cordatlas.atlas.build import (
    attach_part,
    cluster,
    embed_umap,
    integrate,
    leiden_key,
    merge_samples,
    normalise,
    run_pca,
    select_highly_variable_genes,
    stage_part,
    umap_part,
)
from cordatlas.errors import UserInputError
from cordatlas.io.stage import (
    DELIVERABLE_COMPRESSION,
    copy_as_deliverable,
    copy_with_annotations,
    open_layer,
    read_expression,
    read_genes,
    read_obs,
    read_rows,
    read_var,
    read_without_matrices,
    write_stage,
)


def sample(name: str, genes: list[str], n_cells: int = 60, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(
        sp.csr_matrix(rng.poisson(2.0, size=(n_cells, len(genes))).astype(np.float32))
    )
    adata.var_names = genes
    adata.var["gene_ids"] = [f"ENSG_{g}" for g in genes]
    adata.obs_names = [f"{name}:{i}" for i in range(n_cells)]
    adata.obs["sample"] = name
    adata.obs["condition"] = "cord_blood" if name.startswith("CB") else "adult"
    adata.uns["qc"] = {"sample": name, "dropped_sample": False}
    return adata


def test_inner_join_keeps_shared_genes_and_counts():
    a = sample("CB1", ["g1", "g2", "g3"])
    b = sample("AD1", ["g2", "g3", "g4"], seed=1)
    merged, record = merge_samples(
        [a, b], gene_join="inner", min_cells_per_gene=0, min_shared_genes=1
    )
    assert list(merged.var_names) == ["g2", "g3"]
    assert record["genes_dropped_by_join"] == 2
    assert not merged.layers  # one copy of the counts: X
    assert merged.X[:60].toarray().sum() == a[:, ["g2", "g3"]].X.sum()
    assert isinstance(merged.obs["sample"].dtype, pd.CategoricalDtype)


def test_outer_join_fills_zeros_and_keeps_every_gene_id():
    a = sample("CB1", ["g1", "g2", "g3"])
    b = sample("AD1", ["g2", "g3", "g4"], seed=1)
    merged, _ = merge_samples([a, b], gene_join="outer", min_cells_per_gene=0, min_shared_genes=1)
    assert set(merged.var_names) == {"g1", "g2", "g3", "g4"}
    assert merged.var.loc["g4", "gene_ids"] == "ENSG_g4"
    assert merged[merged.obs["sample"] == "CB1", "g4"].X.sum() == 0


def test_dropped_samples_are_left_out_and_listed():
    a = sample("CB1", ["g1", "g2"])
    b = sample("AD1", ["g1", "g2"], n_cells=0)
    b.uns["qc"] = {"sample": "AD1", "dropped_sample": True}
    merged, record = merge_samples(
        [a, b], gene_join="inner", min_cells_per_gene=0, min_shared_genes=1
    )
    assert record["samples_dropped_by_qc"] == ["AD1"]
    assert set(merged.obs["sample"]) == {"CB1"}
    b2 = sample("CB1", ["g1", "g2"], n_cells=0)
    b2.uns["qc"] = {"sample": "CB1", "dropped_sample": True}
    with pytest.raises(UserInputError, match="no sample is left after QC"):
        merge_samples([b2], gene_join="inner", min_cells_per_gene=0, min_shared_genes=1)


def test_pipeline_recovers_planted_groups_deterministically(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(200)]
    parts = []
    for name in ("CB1", "AD1"):
        base = rng.gamma(0.6, 1.0, size=(3, 200))
        group = rng.integers(0, 3, size=300)
        counts = rng.poisson(base[group] * 3).astype(np.float32)
        adata = ad.AnnData(sp.csr_matrix(counts))
        adata.var_names = genes
        adata.obs_names = [f"{name}:{i}" for i in range(300)]
        adata.obs["sample"] = name
        adata.obs["group"] = group
        adata.uns["qc"] = {"sample": name, "dropped_sample": False}
        parts.append(adata)
    # the same three programmes in both samples
    parts[1].X = sp.csr_matrix(
        rng.poisson(
            np.vstack(
                [parts[0].X[parts[0].obs["group"].to_numpy() == g].mean(axis=0) for g in range(3)]
            )[parts[1].obs["group"].to_numpy()]
        ).astype(np.float32)
    )
    merged, _ = merge_samples(parts, gene_join="inner", min_cells_per_gene=3, min_shared_genes=100)

    def run(adata):
        adata = adata.copy()
        normalise(adata)
        select_highly_variable_genes(adata, n_top_genes=100, batch_key="sample")
        run_pca(adata, n_pcs=10, seed=0)
        rep = integrate(adata, method="harmony", key="sample", seed=0)
        cluster(
            adata,
            use_rep=rep,
            n_neighbors=15,
            resolutions=[0.1, 0.5],
            working_resolution=0.1,
            seed=0,
        )
        embed_umap(adata, use_rep=rep, min_dist=0.5, seed=0)
        return adata

    first, second = run(merged), run(merged)
    assert first.obs["leiden"].equals(second.obs["leiden"])
    # the workflow's way: embedding stages read and write only their part (no matrices)
    normalised = merged.copy()
    normalise(normalised)
    select_highly_variable_genes(normalised, n_top_genes=100, batch_key="sample")
    embedding = normalised.copy()
    run_pca(embedding, n_pcs=10, seed=0)
    rep = integrate(embedding, method="harmony", key="sample", seed=0)
    part = stage_part(embedding)
    assert part.X is None and not part.layers
    cluster(part, use_rep=rep, n_neighbors=15, resolutions=[0.1, 0.5], working_resolution=0.1,
            seed=0)  # fmt: skip
    write_stage(stage_part(part), tmp_path / "clusters.h5ad")
    part = ad.read_h5ad(tmp_path / "clusters.h5ad")
    assert "X_umap" not in part.obsm  # embed_umap's, a job of its own
    embed_umap(part, use_rep=rep, min_dist=0.5, seed=0)
    write_stage(umap_part(part), tmp_path / "umap.h5ad")
    attach_part(normalised, part)
    layout = ad.read_h5ad(tmp_path / "umap.h5ad")
    assert set(layout.obsm) == {"X_umap"} and set(layout.uns) == {"umap"} and layout.obs.empty
    assert normalised.obs["leiden"].equals(first.obs["leiden"])
    np.testing.assert_array_equal(normalised.obsm["X_umap"], first.obsm["X_umap"])
    np.testing.assert_array_equal(normalised.varm["PCs"], first.varm["PCs"])
    assert (normalised.X != first.X).nnz == 0
    write_stage(normalised, tmp_path / "atlas.h5ad", deliverable=True)
    cells = read_without_matrices(tmp_path / "atlas.h5ad")
    assert cells.X is None and not cells.layers and cells.var_names.equals(normalised.var_names)
    assert cells.obs["leiden"].equals(normalised.obs["leiden"])
    assert (cells.obsp["connectivities"] != normalised.obsp["connectivities"]).nnz == 0
    np.testing.assert_array_equal(cells.obsm["X_pca_harmony"], normalised.obsm["X_pca_harmony"])
    with pytest.raises(ValueError, match="same order"):
        attach_part(normalised[::-1].copy(), part)
    # one group of cells at a time, read backed (test_cell_level_de)
    rows = (normalised.obs["leiden"] == normalised.obs["leiden"].iloc[0]).to_numpy()
    group = read_rows(tmp_path / "atlas.h5ad", rows, uns_keys=("log1p", "no_such_key"))
    assert group.n_obs == rows.sum() < normalised.n_obs and not group.layers
    assert not group.obsm and not group.obsp  # nothing else leaves the disk
    assert (group.X != normalised.X[rows]).nnz == 0
    assert group.obs_names.equals(normalised.obs_names[rows])
    assert group.obs.equals(normalised.obs[rows])
    assert group.var.equals(normalised.var)
    assert set(group.uns) == {"log1p"} and "log1p" in normalised.uns
    with pytest.raises(ValueError, match="mask of"):
        read_rows(tmp_path / "atlas.h5ad", rows[:-1])
    assert read_obs(tmp_path / "atlas.h5ad").equals(normalised.obs)
    # find_markers' and the scoring rules' way: X, obs, var, named uns; no layer, graph, embedding
    expression = read_expression(tmp_path / "atlas.h5ad", uns_keys=("log1p", "no_such_key"))
    assert (expression.X != normalised.X).nnz == 0 and expression.X.dtype == normalised.X.dtype
    assert not expression.layers and not expression.obsm and not expression.obsp
    assert expression.obs.equals(normalised.obs) and expression.var.equals(normalised.var)
    assert set(expression.uns) == {"log1p"}
    # integrate_samples' way: PCA on the highly variable genes read alone, in chunks of cells
    write_stage(normalised, tmp_path / "normalised.h5ad")
    hvg = normalised.var["highly_variable"].to_numpy()
    monkeypatch.setattr("cordatlas.io.stage.CHUNK_CELLS", 37)  # several chunks, a ragged last
    alone = read_genes(tmp_path / "normalised.h5ad", hvg)
    assert alone.n_vars == hvg.sum() and not alone.layers and alone.obs.equals(normalised.obs)
    assert (alone.X != normalised.X[:, hvg]).nnz == 0
    assert read_var(tmp_path / "normalised.h5ad").equals(normalised.var)
    run_pca(alone, n_pcs=10, seed=0)
    wide = stage_part(alone, all_genes=normalised.var_names)
    np.testing.assert_array_equal(wide.obsm["X_pca"], embedding.obsm["X_pca"])
    np.testing.assert_array_equal(wide.varm["PCs"], embedding.varm["PCs"])
    assert wide.var_names.equals(normalised.var_names)
    with pytest.raises(ValueError, match="mask of"):
        read_genes(tmp_path / "normalised.h5ad", hvg[:-1])
    # aggregate_pseudobulk's way: the counts layer alone, left on disk and read by rows
    with open_layer(tmp_path / "normalised.h5ad", "counts", uns_keys=("log1p",)) as counts:
        assert not sp.issparse(counts.X) and not counts.layers  # on disk, not read
        assert (counts.X[5:40] != normalised.layers["counts"][5:40]).nnz == 0
        assert set(counts.uns) == {"log1p"} and counts.obs.equals(normalised.obs)
    with pytest.raises(UserInputError, match="no layer 'spliced'"):
        with open_layer(tmp_path / "normalised.h5ad", "spliced"):
            pass
    assert rep_in(first)
    table = pd.crosstab(first.obs["leiden"], first.obs["group"])
    assert (table.max(axis=1).sum() / table.to_numpy().sum()) > 0.95
    assert leiden_key(0.5) in first.obs and "X_umap" in first.obsm


def rep_in(adata: ad.AnnData) -> bool:
    return adata.uns["integration"]["use_rep"] == "X_pca_harmony" and "X_pca_harmony" in adata.obsm


def test_annotated_copy_and_delivered_atlas_keep_every_matrix(tmp_path, monkeypatch):
    """annotate_cells copies the normalised file and writes its annotations over the copy;
    write_atlas copies its matrices by chunks, compressed, under the annotations and UMAP."""
    import h5py

    rng = np.random.default_rng(11)
    counts = sp.random(230, 40, density=0.3, format="csr", random_state=3, dtype=np.float32)
    counts.data = np.ceil(counts.data * 20)
    normalised = ad.AnnData(
        X=counts.copy(),
        obs=pd.DataFrame({"sample": ["a", "b"] * 115}, index=[f"c{i}" for i in range(230)]),
        var=pd.DataFrame({"highly_variable": rng.random(40) > 0.5}, index=[f"g{i}" for i in range(40)]),
        layers={"counts": counts},
        uns={"log1p": {"base": None}},
    )  # fmt: skip
    normalised.X.data = np.log1p(normalised.X.data)
    write_stage(normalised, tmp_path / "normalised.h5ad")
    cells = read_expression(tmp_path / "normalised.h5ad")
    cells.obs["cell_type"] = pd.Categorical(["T", "B"] * 115)
    cells.obsm["X_pca"] = rng.normal(size=(230, 3)).astype(np.float32)
    cells.obsp["connectivities"] = sp.identity(230, format="csr")
    cells.varm["PCs"] = rng.normal(size=(40, 3))
    cells.uns["cell_type_annotation"] = {"panel": "v1"}
    copy_with_annotations(tmp_path / "normalised.h5ad", tmp_path / "annotated.h5ad", cells)
    annotated = ad.read_h5ad(tmp_path / "annotated.h5ad")
    assert (annotated.X != normalised.X).nnz == 0
    assert (annotated.layers["counts"] != counts).nnz == 0
    assert annotated.obs["cell_type"].tolist() == ["T", "B"] * 115
    assert annotated.obs["sample"].equals(normalised.obs["sample"])
    assert annotated.var.equals(normalised.var)
    assert set(annotated.uns) == {"log1p", "cell_type_annotation"}  # the source's uns kept
    np.testing.assert_array_equal(annotated.obsm["X_pca"], cells.obsm["X_pca"])
    np.testing.assert_array_equal(annotated.varm["PCs"], cells.varm["PCs"])
    assert (annotated.obsp["connectivities"] != cells.obsp["connectivities"]).nnz == 0
    with pytest.raises(ValueError, match="same order"):
        copy_with_annotations(tmp_path / "normalised.h5ad", tmp_path / "x.h5ad", cells[::-1])
    # write_atlas: the annotations (no matrices) with the layout, matrices copied by chunks
    monkeypatch.setattr("cordatlas.io.stage.CHUNK_CELLS", 37)  # several chunks, a ragged last
    delivered = read_without_matrices(tmp_path / "annotated.h5ad")
    assert delivered.var.equals(normalised.var) and "PCs" in delivered.varm
    delivered.obsm["X_umap"] = rng.normal(size=(230, 2)).astype(np.float32)
    copy_as_deliverable(tmp_path / "annotated.h5ad", tmp_path / "atlas.h5ad", delivered)
    atlas = ad.read_h5ad(tmp_path / "atlas.h5ad")
    assert (atlas.X != normalised.X).nnz == 0 and atlas.X.dtype == normalised.X.dtype
    assert (atlas.layers["counts"] != counts).nnz == 0
    assert atlas.obs.equals(annotated.obs) and atlas.var.equals(annotated.var)
    np.testing.assert_array_equal(atlas.obsm["X_umap"], delivered.obsm["X_umap"])
    np.testing.assert_array_equal(atlas.varm["PCs"], cells.varm["PCs"])
    assert set(atlas.uns) == {"log1p", "cell_type_annotation"}
    with h5py.File(tmp_path / "atlas.h5ad") as handle:
        assert handle["X/data"].compression == DELIVERABLE_COMPRESSION
        assert handle["layers/counts/indices"].compression == DELIVERABLE_COMPRESSION
    with pytest.raises(ValueError, match="same order"):
        copy_as_deliverable(tmp_path / "annotated.h5ad", tmp_path / "y.h5ad", delivered[::-1])


def test_pca_in_chunks_equals_scanpys_scale_and_pca():
    """run_pca's chunked covariance gives scanpy's scale(max_value=10) + pca (arpack) answer."""
    rng = np.random.default_rng(7)
    n_cells, n_genes = 3000, 400
    group = rng.integers(0, 6, n_cells)
    base = rng.gamma(0.4, 1.5, size=(6, n_genes))
    counts = rng.poisson(base[group] * 2.0)
    counts[:, 0] = 0
    counts[:3, 0] = 50  # 30 standard deviations out: clipped at 10
    adata = ad.AnnData(sp.csr_matrix(np.log1p(counts).astype(np.float32)))
    adata.var["highly_variable"] = rng.random(n_genes) < 0.7
    adata.var.loc[adata.var_names[:2], "highly_variable"] = True
    adata.X[:, 1] = 0  # a highly variable gene without variance (scaled by 1, as scanpy does)
    reference = adata[:, adata.var["highly_variable"]].copy()
    sc.pp.scale(reference, max_value=10)
    sc.pp.pca(reference, n_comps=20, svd_solver="arpack", random_state=0)
    answers = []
    for chunk_cells in (n_cells, 701):  # one chunk; several with a ragged last
        ours = adata.copy()
        run_pca(ours, n_pcs=20, seed=0, chunk_cells=chunk_cells)
        assert ours.obsm["X_pca"].dtype == np.float32 and ours.obsm["X_pca"].shape == (n_cells, 20)
        np.testing.assert_allclose(ours.obsm["X_pca"], reference.obsm["X_pca"], atol=2e-5)
        hvg = adata.var["highly_variable"].to_numpy()
        np.testing.assert_allclose(ours.varm["PCs"][hvg], reference.varm["PCs"], atol=1e-6)
        assert not ours.varm["PCs"][~hvg].any()
        for key in ("variance", "variance_ratio"):
            np.testing.assert_allclose(ours.uns["pca"][key], reference.uns["pca"][key], rtol=1e-6)
        assert ours.uns["pca"]["params"] == reference.uns["pca"]["params"]
        answers.append(ours.obsm["X_pca"])
    np.testing.assert_allclose(answers[0], answers[1], atol=1e-5)


def test_markers_equal_scanpys_wilcoxon():
    """find_markers (illico) gives scanpy's rank_genes_groups numbers and its pts fractions."""

    from cordatlas.atlas.markers import find_markers

    rng = np.random.default_rng(3)
    n_cells, n_genes = 900, 120
    clusters = rng.integers(0, 4, n_cells)
    rates = rng.gamma(1.0, 1.0, size=(4, n_genes))
    rates[np.arange(4), np.arange(4)] = 30.0  # one planted marker per cluster
    counts = rng.poisson(rates[clusters])
    x = sp.csr_matrix(np.log1p(counts).astype(np.float32))
    obs = pd.DataFrame(
        {"leiden": pd.Categorical(clusters.astype(str))}, index=[f"c{i}" for i in range(n_cells)]
    )
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    markers = find_markers(adata.copy(), groupby="leiden", n_genes=n_genes)

    sc.tl.rank_genes_groups(adata, "leiden", method="wilcoxon", tie_correct=True, pts=True)
    for group in ["0", "1", "2", "3"]:
        expected = sc.get.rank_genes_groups_df(adata, group=group).set_index("names")
        got = markers[markers["cluster"] == group].set_index("gene")
        assert list(got.index) == list(expected.index)
        np.testing.assert_allclose(got["score"], expected["scores"], rtol=1e-5)
        np.testing.assert_allclose(got["pval"], expected["pvals"], rtol=1e-6, atol=1e-300)
        np.testing.assert_allclose(got["padj"], expected["pvals_adj"], rtol=1e-6, atol=1e-300)
        np.testing.assert_allclose(got["log2FC"], expected["logfoldchanges"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["pct_in"], expected["pct_nz_group"], rtol=1e-6)
        np.testing.assert_allclose(got["pct_out"], expected["pct_nz_reference"], rtol=1e-6)
        assert f"g{group}" in got.index[:3]  # the planted marker ranks near the top


def test_knn_graph_is_exact_up_to_the_cell_limit_then_approximate():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(5)
    embedding = rng.normal(size=(5000, 10)).astype(np.float32)
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(5000)]))
    adata.obsm["X_pca"] = embedding
    options = dict(use_rep="X_pca", n_neighbors=10, resolutions=[0.5], working_resolution=0.5,
                   seed=0)  # fmt: skip
    exact = adata.copy()
    cluster(exact, exact_knn_max_cells=5000, threads=2, **options)
    assert exact.uns["neighbors"]["params"]["knn"] == "exact"
    # as scanpy's own exact path for small data: the cell itself and n_neighbors others
    _, truth = NearestNeighbors(n_neighbors=11).fit(embedding).kneighbors(embedding)
    graph = exact.obsp["distances"].tolil()
    for cell in rng.choice(5000, size=50, replace=False):
        assert set(graph.rows[cell]) == set(truth[cell])
    approximate = adata.copy()
    cluster(approximate, exact_knn_max_cells=4999, **options)
    assert approximate.uns["neighbors"]["params"]["knn"] == "pynndescent"


def test_umap_starts_from_the_chosen_layout():
    rng = np.random.default_rng(6)
    centres = rng.normal(scale=6.0, size=(4, 10))
    embedding = (centres[np.repeat(np.arange(4), 150)] + rng.normal(size=(600, 10))).astype(
        np.float32
    )
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(600)]))
    adata.obsm["X_pca"] = embedding
    cluster(adata, use_rep="X_pca", n_neighbors=10, resolutions=[0.5], working_resolution=0.5,
            seed=0)  # fmt: skip
    options = dict(use_rep="X_pca", min_dist=0.5, seed=0)
    runs = {}
    for init in ("pca", "spectral", "pca"):
        run = adata.copy()
        embed_umap(run, init=init, **options)
        assert run.uns["umap"]["params"]["init"] == init
        runs.setdefault(init, []).append(run.obsm["X_umap"])
    np.testing.assert_array_equal(*runs["pca"])  # seeded: the same picture on a rerun
    assert not np.allclose(runs["pca"][0], runs["spectral"][0])
    # the groups stay apart from either start
    group = np.repeat(np.arange(4), 150)
    for layout in (runs["pca"][0], runs["spectral"][0]):
        centroids = np.array([layout[group == g].mean(axis=0) for g in range(4)])
        spread = max(
            np.linalg.norm(layout[group == g] - centroids[g], axis=1).mean() for g in range(4)
        )
        gaps = [np.linalg.norm(centroids[i] - centroids[j]) for i in range(4) for j in range(i)]
        assert min(gaps) > 2 * spread
    with pytest.raises(ValueError, match="umap_init"):
        embed_umap(adata.copy(), init="tsne", **options)
