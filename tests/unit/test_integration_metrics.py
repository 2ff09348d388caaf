"""Integration metrics on seeded synthetic embeddings with planted mixing and separation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from cordatlas.atlas.build import leiden_key
from cordatlas.atlas.integration_metrics import (
    cluster_batch_entropy,
    integration_metrics,
    integration_metrics_note,
    integration_verdict,
    knn_batch_entropy,
    random_mixing_entropy,
    shared_condition_fraction,
    silhouette,
)
from cordatlas.errors import UserInputError

N_TYPES = 3
CELLS_PER_TYPE_AND_BATCH = 50


def embedding_adata(*, batch_shift: float, seed: int = 0) -> ad.AnnData:
    """Three planted cell types x two equal batches; `batch_shift` moves batch B away in X_pca.

    ``X_pca_harmony`` is the same data without the batch shift (a perfect integration).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(N_TYPES, 10))
    cell_type = np.repeat(np.arange(N_TYPES), 2 * CELLS_PER_TYPE_AND_BATCH)
    batch = np.tile(np.repeat(["A", "B"], CELLS_PER_TYPE_AND_BATCH), N_TYPES)
    integrated = centres[cell_type] + rng.normal(size=(cell_type.size, 10))
    unintegrated = integrated.copy()
    unintegrated[batch == "B", 0] += batch_shift
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"cell{i}" for i in range(cell_type.size)]))
    adata.obs["sample"] = pd.Categorical(batch)
    adata.obs["cell_type"] = pd.Categorical([f"type{t}" for t in cell_type])
    adata.obsm["X_pca"] = unintegrated.astype(np.float32)
    adata.obsm["X_pca_harmony"] = integrated.astype(np.float32)
    return adata


def test_knn_entropy_near_one_when_mixed_and_zero_when_separated():
    mixed = embedding_adata(batch_shift=0.0)
    sc.pp.neighbors(mixed, n_neighbors=30, use_rep="X_pca", random_state=0)
    separated = embedding_adata(batch_shift=100.0)
    sc.pp.neighbors(separated, n_neighbors=30, use_rep="X_pca", random_state=0)

    mixed_entropy = knn_batch_entropy(mixed, batch_key="sample")
    separated_entropy = knn_batch_entropy(separated, batch_key="sample")

    assert mixed_entropy.shape == (mixed.n_obs,)
    assert np.all((mixed_entropy >= 0) & (mixed_entropy <= 1))
    # 29 neighbours from two equal batches: the plug-in entropy of random mixing is ~0.97.
    assert mixed_entropy.mean() > 0.9
    np.testing.assert_allclose(separated_entropy, 0.0, atol=1e-12)


def test_knn_entropy_by_hand_on_a_small_graph():
    adata = ad.AnnData(obs=pd.DataFrame(index=list("abcde")))
    adata.obs["sample"] = ["A", "A", "B", "B", "C"]
    # Rows: a -> {b, c}; b -> {a, b (self, ignored), c, e}; c -> {d, explicit-zero duplicate a};
    # d -> {c}; e -> nothing.
    rows = [0, 0, 1, 1, 1, 1, 2, 2, 3]
    cols = [1, 2, 0, 1, 2, 4, 3, 0, 2]
    dists = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    adata.obsp["distances"] = sp.csr_matrix((dists, (rows, cols)), shape=(5, 5))
    assert adata.obsp["distances"].nnz == 9  # explicit zeros kept

    entropy = knn_batch_entropy(adata, batch_key="sample")

    log3 = np.log(3)
    expected = [
        np.log(2) / log3,  # {A, B}
        1.0,  # {A, B, C}
        np.log(2) / log3,  # {B, A}: the zero-distance duplicate counts
        0.0,  # {B}
        np.nan,  # no neighbours
    ]
    np.testing.assert_allclose(entropy, expected)


def test_random_mixing_entropy_is_below_one_for_unequal_batches():
    assert random_mixing_entropy(["A", "B"] * 10) == pytest.approx(1.0)
    unequal = ["A"] * 75 + ["B"] * 25
    expected = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(2)
    assert random_mixing_entropy(unequal) == pytest.approx(expected)
    assert expected == pytest.approx(0.8113, abs=1e-4)
    assert np.isnan(random_mixing_entropy(["A"] * 5))


def test_cluster_batch_entropy_by_hand():
    labels = pd.Categorical(
        ["0", "0", "0", "1", "1", "1", "1", "2", "2", "2"], categories=["0", "1", "2", "empty"]
    )
    batches = ["A", "B", "C", "A", "A", "B", "B", "C", "C", "C"]

    table = cluster_batch_entropy(labels, batches)

    assert table["cluster"].tolist() == ["0", "1", "2"]  # the empty category is dropped
    assert table["n_cells"].tolist() == [3, 4, 3]
    assert table["n_batches"].tolist() == [3, 2, 1]
    # Normalised by log(3): three batches in the whole data, not in each cluster.
    np.testing.assert_allclose(table["batch_entropy"], [1.0, np.log(2) / np.log(3), 0.0])
    assert table["largest_batch"].iloc[2] == "C"
    np.testing.assert_allclose(table["largest_batch_fraction"], [1 / 3, 0.5, 1.0])


def test_cluster_batch_entropy_rejects_missing_batch_labels():
    with pytest.raises(UserInputError, match="no batch label"):
        cluster_batch_entropy(["0", "0"], ["A", None])


def test_silhouette_high_for_separated_groups_lower_for_overlapping():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 100)
    separated = rng.normal(size=(300, 5)) + 20.0 * labels[:, None]
    overlapping = rng.normal(size=(300, 5)) + 0.3 * labels[:, None]

    high = silhouette(separated, labels)
    low = silhouette(overlapping, labels)

    assert high > 0.8
    assert low < 0.2
    assert low < high


def test_silhouette_nan_with_one_label_and_ignores_missing_labels():
    embedding = np.random.default_rng(2).normal(size=(20, 3))
    assert np.isnan(silhouette(embedding, ["0"] * 20))
    # Only one label left once missing labels are dropped.
    assert np.isnan(silhouette(embedding, ["0"] * 19 + [None]))
    assert np.isfinite(silhouette(embedding, ["0"] * 10 + ["1"] * 9 + [None]))


def test_silhouette_subsample_is_seeded():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=400)
    embedding = rng.normal(size=(400, 4)) + labels[:, None]

    first = silhouette(embedding, labels, sample_size=100, seed=7)
    again = silhouette(embedding, labels, sample_size=100, seed=7)
    other_seed = silhouette(embedding, labels, sample_size=100, seed=8)

    assert first == again
    assert first != other_seed  # the subsample really depends on the seed
    assert silhouette(embedding, labels, sample_size=400) == pytest.approx(
        silhouette(embedding, labels, sample_size=10_000)
    )


def clustered(adata: ad.AnnData, *, use_rep: str) -> ad.AnnData:
    """kNN graph on `use_rep`; planted clusterings: one cluster, cell types, types x batches."""
    sc.pp.neighbors(adata, n_neighbors=15, use_rep=use_rep, random_state=0)
    adata.obs[leiden_key(0.0)] = pd.Categorical(["0"] * adata.n_obs)
    adata.obs[leiden_key(0.5)] = pd.Categorical(adata.obs["cell_type"].cat.codes.astype(str))
    adata.obs[leiden_key(2.0)] = pd.Categorical(
        adata.obs["cell_type"].astype(str) + "_" + adata.obs["sample"].astype(str)
    )
    return adata


def test_integration_metrics_per_resolution():
    adata = clustered(embedding_adata(batch_shift=30.0), use_rep="X_pca_harmony")

    table = integration_metrics(
        adata,
        resolutions=[0.0, 0.5, 2.0],
        batch_key="sample",
        use_rep="X_pca_harmony",
        cell_type_key="cell_type",
    )

    assert table["resolution"].tolist() == [0.0, 0.5, 2.0]
    assert table["clustering"].tolist() == ["leiden_res0.0", "leiden_res0.5", "leiden_res2.0"]
    assert table["n_clusters"].tolist() == [1, N_TYPES, 2 * N_TYPES]
    # One cluster and clusters = cell types both hold the two batches in equal parts.
    np.testing.assert_allclose(table["cluster_batch_entropy"], [1.0, 1.0, 0.0], atol=1e-12)
    assert table["frac_clusters_batch_dominated"].tolist() == [0.0, 0.0, 1.0]
    # A single-cluster resolution has no silhouette but does not crash.
    assert np.isnan(table["cluster_silhouette"].iloc[0])
    assert table["cluster_silhouette"].iloc[1] > 0.7
    # Splitting each type by batch cuts well-mixed clusters in two: worse silhouette.
    assert table["cluster_silhouette"].iloc[2] < table["cluster_silhouette"].iloc[1]
    # Resolution-free columns repeat on every row.
    for column in [
        "n_batches",
        "knn_batch_entropy",
        "knn_batch_entropy_random",
        "cell_type_silhouette",
        "cell_type_silhouette_unintegrated",
    ]:
        assert table[column].nunique() == 1, column
    row = table.iloc[0]
    assert row["n_batches"] == 2
    assert row["knn_batch_entropy_random"] == pytest.approx(1.0)
    assert row["knn_batch_entropy"] > 0.85
    # The batch shift in X_pca blurs the cell types; the integrated embedding keeps them apart.
    assert row["cell_type_silhouette"] > 0.7
    assert row["cell_type_silhouette_unintegrated"] < row["cell_type_silhouette"]


def test_integration_metrics_on_unintegrated_graph_shows_no_mixing():
    adata = clustered(embedding_adata(batch_shift=100.0), use_rep="X_pca")

    table = integration_metrics(adata, resolutions=[0.5], batch_key="sample", use_rep="X_pca")

    assert table["knn_batch_entropy"].iloc[0] < 0.05
    assert np.isnan(table["cell_type_silhouette"].iloc[0])  # no cell_type_key given
    assert np.isnan(table["cell_type_silhouette_unintegrated"].iloc[0])


def test_integration_metrics_is_deterministic_with_the_seed():
    adata = clustered(embedding_adata(batch_shift=5.0), use_rep="X_pca_harmony")
    kwargs = {
        "resolutions": [0.0, 0.5, 2.0],
        "batch_key": "sample",
        "use_rep": "X_pca_harmony",
        "cell_type_key": "cell_type",
        "sample_size": 120,  # below n_obs, so the subsample matters
        "seed": 3,
    }
    pd.testing.assert_frame_equal(
        integration_metrics(adata, **kwargs), integration_metrics(adata, **kwargs)
    )


def test_integration_metrics_with_one_batch_gives_nan_entropies():
    adata = embedding_adata(batch_shift=0.0)
    adata.obs["sample"] = pd.Categorical(["A"] * adata.n_obs)
    adata = clustered(adata, use_rep="X_pca")

    table = integration_metrics(adata, resolutions=[0.5], batch_key="sample", use_rep="X_pca")

    assert table["n_batches"].iloc[0] == 1
    assert np.isnan(table["knn_batch_entropy"].iloc[0])
    assert np.isnan(table["cluster_batch_entropy"].iloc[0])
    assert table["frac_clusters_batch_dominated"].iloc[0] == 1.0


def test_integration_metrics_user_errors_name_the_fix():
    adata = embedding_adata(batch_shift=0.0)
    with pytest.raises(UserInputError, match="sc.pp.neighbors"):
        integration_metrics(adata, resolutions=[0.5], batch_key="sample", use_rep="X_pca")
    adata = clustered(adata, use_rep="X_pca")
    with pytest.raises(UserInputError, match="leiden_res1.0"):
        integration_metrics(adata, resolutions=[1.0], batch_key="sample", use_rep="X_pca")
    with pytest.raises(UserInputError, match="donor"):
        integration_metrics(adata, resolutions=[0.5], batch_key="donor", use_rep="X_pca")
    with pytest.raises(UserInputError, match="X_scvi"):
        integration_metrics(adata, resolutions=[0.5], batch_key="sample", use_rep="X_scvi")


def test_note_explains_every_column_and_quotes_parameters():
    adata = clustered(embedding_adata(batch_shift=0.0), use_rep="X_pca")
    table = integration_metrics(adata, resolutions=[0.5], batch_key="sample", use_rep="X_pca")

    note = integration_metrics_note(
        batch_key="sample", use_rep="X_pca_harmony", dominance_threshold=0.9
    )

    for column in table.columns:
        if column not in {"resolution", "clustering", "n_batches"}:
            assert column in note, column
    assert "``sample``" in note
    assert "``X_pca_harmony``" in note
    assert "90 %" in note


def test_shared_condition_fraction_by_hand():
    # cluster a: 10 cord + 10 adult (shared); b: 19 cord + 1 adult (5 %: shared at the 5 % cut);
    # c: 30 cord + 0 adult (not shared)
    labels = ["a"] * 20 + ["b"] * 20 + ["c"] * 30
    conditions = ["cord"] * 10 + ["adult"] * 10 + ["cord"] * 19 + ["adult"] + ["cord"] * 30
    assert shared_condition_fraction(labels, conditions) == pytest.approx(40 / 70)
    assert shared_condition_fraction(labels, conditions, min_share=0.06) == pytest.approx(20 / 70)
    assert np.isnan(shared_condition_fraction(labels, ["cord"] * 70))


def test_verdict_fails_when_conditions_never_share_a_cluster():
    """Batches standing for conditions: clusters = types (shared) vs types x batches (not)."""
    adata = clustered(embedding_adata(batch_shift=30.0), use_rep="X_pca_harmony")
    table = integration_metrics(adata, resolutions=[0.5, 2.0], batch_key="sample",
                                use_rep="X_pca_harmony", condition_key="sample")  # fmt: skip
    assert table["frac_cells_shared_conditions"].tolist() == [1.0, 0.0]
    assert table["frac_cells_batch_dominated"].tolist() == [0.0, 1.0]

    good = integration_verdict(table, working_resolution=0.5, batches_per_condition=1)
    assert good[["severity", "level"]].iloc[0].tolist() == ["info", "good"]
    assert good["topic"].iloc[0] == "integration_verdict:good"
    assert "100% of cells in clusters shared" in good["message"].iloc[0]

    failed = integration_verdict(table, working_resolution=2.0, batches_per_condition=1)
    row = failed.iloc[0]
    assert (row["severity"], row["level"]) == ("warning", "failed")
    assert row["message"].startswith("integration failed at resolution 2:")
    assert "only 0% of cells sit in clusters shared by both conditions" in row["message"]
    # one batch per condition: one-batch clusters are the condition clusters, not said twice
    assert "made (> 90 %) of one batch" not in row["message"]


def test_verdict_weak_and_the_batch_rule_with_replicated_conditions():
    row = {"resolution": 1.0, "frac_cells_shared_conditions": 0.4,
           "frac_cells_batch_dominated": 0.8, "knn_batch_entropy": 0.2,
           "knn_batch_entropy_random": 0.9, "cell_type_silhouette": 0.3,
           "cell_type_silhouette_unintegrated": 0.35}  # fmt: skip
    metrics = pd.DataFrame([row])
    # 40 % shared is weak; 80 % of cells in one-batch clusters with 2 batches per condition fails
    verdict = integration_verdict(metrics, working_resolution=1.0, batches_per_condition=2)
    message = verdict["message"].iloc[0]
    assert verdict["level"].iloc[0] == "failed"
    assert "80% of cells sit in clusters made (> 90 %) of one batch (cut 75%)" in message
    assert "only 40% of cells" in message and "mix poorly" in message
    assert "blurred" not in message  # a silhouette drop of 0.05 is under the 0.1 cut
    weak = integration_verdict(metrics.assign(frac_cells_batch_dominated=0.1),
                               working_resolution=1.0, batches_per_condition=2)  # fmt: skip
    assert weak["level"].iloc[0] == "weak" and weak["severity"].iloc[0] == "warning"
    with pytest.raises(UserInputError, match="working resolution 0.5"):
        integration_verdict(metrics, working_resolution=0.5, batches_per_condition=2)
