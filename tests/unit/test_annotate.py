"""Marker-panel annotation and CellTypist on simulated studies with known cell types."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from cordatlas.annotate.celltypist import celltypist_annotate
from cordatlas.annotate.labels import annotate_clusters, score_cell_types
from cordatlas.annotate.panel import UNASSIGNED, load_panel, merge_panels
from cordatlas.atlas.build import (
    cluster,
    integrate,
    normalise,
    run_pca,
    select_highly_variable_genes,
)
from cordatlas.demo.simulate import CELL_TYPES, simulate_study
from cordatlas.errors import UserInputError
from cordatlas.params import default_params

#: The schema's cut-offs (config annotation.min_score, annotation.min_margin).
ANNOTATION = default_params().annotation
CUTOFFS = {"min_score": ANNOTATION.min_score, "min_margin": ANNOTATION.min_margin}

PANEL = Path(__file__).resolve().parents[2] / "config" / "marker_panel.yaml"

#: Entries the panel must provide (the simulator, the workflow and the report use these names).
REQUIRED_ENTRIES = {
    "HSC_MPP", "lymphoid_progenitor", "myeloid_progenitor", "erythroid_progenitor", "erythroid",
    "megakaryocyte", "CD14_monocyte", "CD16_monocyte", "cDC", "pDC", "pro_pre_B", "B_naive",
    "B_memory", "plasma", "CD4_naive", "CD4_memory", "Treg", "CD8_naive", "CD8_effector", "MAIT",
    "gamma_delta_T", "NK_CD56bright", "NK_CD56dim",
}  # fmt: skip


def _sheet() -> pd.DataFrame:
    samples = ["CB1", "CB2", "AD1", "AD2"]
    return pd.DataFrame(
        {
            "sample": samples,
            "donor": samples,
            "condition": ["cord_blood", "cord_blood", "adult", "adult"],
        }
    )


@pytest.fixture(scope="module")
def atlas() -> ad.AnnData:
    """A small simulated study through the atlas steps (healthy singlets, Harmony, Leiden)."""
    study = simulate_study(_sheet(), n_cells_per_sample=600, n_genes=1500, seed=3)
    adata = study.adata[study.adata.obs["artefact"] == "none"].copy()
    adata.obs_names = (
        adata.obs["sample"].astype(str) + ":" + adata.obs["barcode"].astype(str)
    ).to_numpy()
    adata.obs = adata.obs.rename(columns={"cell_type": "true_cell_type"})
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    normalise(adata)
    select_highly_variable_genes(adata, n_top_genes=800, batch_key="sample")
    run_pca(adata, n_pcs=20, seed=0)
    rep = integrate(adata, method="harmony", key="sample", seed=0)
    cluster(
        adata,
        use_rep=rep,
        n_neighbors=15,
        resolutions=[1.0],
        working_resolution=1.0,
        umap_min_dist=0.5,
        seed=0,
    )
    return adata


@pytest.fixture(scope="module")
def panel() -> dict:
    return load_panel(PANEL)


def _write(path: Path, content: object) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def _minimal_panel(**entries: dict) -> dict:
    return {"version": "1", "species": "human", "cell_types": entries}


# --------------------------------------------------------------------------------- the panel
def test_curated_panel_is_complete_and_cited(panel):
    assert panel["version"] and panel["species"] == "human" and panel["description"]
    assert REQUIRED_ENTRIES <= set(panel["cell_types"])
    for name, entry in panel["cell_types"].items():
        assert 4 <= len(entry["markers"]) <= 10, name
        assert entry["sources"] and entry["lineage"] and entry["description"], name
        # haemoglobin genes are ambient in blood; no entry may rely on them
        assert not [g for g in entry["markers"] if g.startswith("HB")], name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"cell_types": {"B": {"markers": ["MS4A1"], "sources": ["x"]}}}, "'version' is missing"),
        (_minimal_panel(**{"CD4 naive": {"markers": ["CD4"], "sources": ["x"]}}), "'CD4 naive'"),
        (_minimal_panel(B={"markers": [], "sources": ["x"]}), "'B' field 'markers'"),
        (_minimal_panel(B={"markers": "MS4A1", "sources": ["x"]}), "'B' field 'markers'"),
        (_minimal_panel(B={"markers": ["MS4A1", 3], "sources": ["x"]}), "'B' field 'markers'"),
        (_minimal_panel(B={"markers": ["MS4A1"]}), r"'B' lacks field\(s\) \['sources'\]"),
        (_minimal_panel(B={"markers": ["MS4A1"], "sources": []}), "'B' field 'sources'"),
        (_minimal_panel(B={"markers": ["MS4A1"], "sources": ["x"], "gene": 1}), "unknown field"),
        (_minimal_panel(unassigned={"markers": ["MS4A1"], "sources": ["x"]}), "reserved"),
        ({"version": "1", "cell_types": {}}, "'cell_types' must be a non-empty mapping"),
        ({"version": "1", "celltypes": {}}, "unknown top-level key"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_invalid_panels_name_the_entry_and_field(tmp_path, content, message):
    path = _write(tmp_path / "panel.yaml", content)
    with pytest.raises(UserInputError, match=message) as err:
        load_panel(path)
    assert str(path) in str(err.value)


def test_missing_or_broken_panel_file(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_panel(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("cell_types: [unclosed\n")
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_panel(broken)


def test_merge_replaces_and_adds_entries(tmp_path, panel):
    extra = load_panel(
        _write(
            tmp_path / "mine.yaml",
            {
                "version": "lab-1",
                "species": "human",
                "cell_types": {
                    "Treg": {"markers": ["FOXP3", "IL2RA"], "sources": ["our lab"]},
                    "basophil": {"markers": ["CLC", "GATA2", "HDC"], "sources": ["our lab"]},
                },
            },
        )
    )
    merged = merge_panels(panel, extra)
    assert merged["cell_types"]["Treg"]["markers"] == ["FOXP3", "IL2RA"]
    assert merged["cell_types"]["basophil"]["markers"] == ["CLC", "GATA2", "HDC"]
    assert merged["cell_types"]["B_naive"] == panel["cell_types"]["B_naive"]
    assert list(merged["cell_types"])[-1] == "basophil"
    assert merged["version"] == f"{panel['version']}+lab-1"
    assert panel["cell_types"]["Treg"]["markers"] != ["FOXP3", "IL2RA"]  # inputs untouched
    mouse = dict(extra, species="mouse")
    with pytest.raises(UserInputError, match="species"):
        merge_panels(panel, mouse)


# ------------------------------------------------------------------------------------ scoring
def test_types_with_too_few_markers_are_skipped_and_reported(atlas, panel):
    scores, report = score_cell_types(atlas, panel, seed=0)
    report = report.set_index("cell_type")
    assert list(report.index) == list(panel["cell_types"])
    # the simulator has no DNTT/FLT3/... : lymphoid progenitors keep only CD34
    assert not report.loc["lymphoid_progenitor", "scored"]
    assert report.loc["lymphoid_progenitor", "n_present"] == 1
    assert "lymphoid_progenitor" not in scores.columns
    assert "DNTT" in report.loc["lymphoid_progenitor", "markers_missing"].split(",")
    assert report.loc["CD14_monocyte", "scored"]
    assert "CD14" in report.loc["CD14_monocyte", "markers_used"].split(",")
    assert set(scores.columns) == set(report.index[report["scored"]])
    assert scores.index.equals(atlas.obs_names)
    assert np.isfinite(scores.to_numpy()).all()


def test_raw_counts_and_unknown_genes_are_refused(atlas, panel):
    raw = ad.AnnData(atlas.layers["counts"], var=atlas.var[[]].copy())
    raw.obs_names = atlas.obs_names
    with pytest.raises(UserInputError, match="log-normalised"):
        score_cell_types(raw, panel)
    renamed = atlas.copy()
    renamed.var_names = [f"ENSG{i:011d}" for i in range(renamed.n_vars)]
    with pytest.raises(UserInputError, match="HGNC symbols"):
        score_cell_types(renamed, panel)


# ---------------------------------------------------------------------------------- labelling
def test_annotation_recovers_the_simulated_cell_types(atlas, panel):
    adata = atlas.copy()
    scores, _ = score_cell_types(adata, panel, seed=0)
    table = annotate_clusters(adata, scores, cluster_key="leiden", **CUTOFFS)
    truth = adata.obs["true_cell_type"].astype(str)
    in_panel = truth.isin(list(panel["cell_types"]))
    assert in_panel.all() and set(CELL_TYPES) <= set(panel["cell_types"])
    accuracy = (adata.obs["cell_type"].astype(str)[in_panel] == truth[in_panel]).mean()
    assert accuracy >= 0.9, accuracy

    assert list(table.columns) == [
        "cluster", "n_cells", "cell_type", "top_type", "score", "runner_up",
        "runner_up_score", "margin", "confidence", "assigned",
    ]  # fmt: skip
    assert table["n_cells"].sum() == adata.n_obs
    assert set(table["cluster"]) == set(adata.obs["leiden"].astype(str))
    assert ((table["confidence"] >= 0) & (table["confidence"] <= 1)).all()
    assert np.allclose(table["margin"], table["score"] - table["runner_up_score"])
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert adata.obs["cell_type_confidence"].dtype == np.float64
    stored = adata.obsm["cell_type_scores"]
    assert isinstance(stored, pd.DataFrame) and stored.index.equals(adata.obs_names)
    # a cell's confidence is its cluster's
    by_cluster = table.set_index("cluster")["confidence"]
    expected = adata.obs["leiden"].astype(str).map(by_cluster).to_numpy()
    assert np.allclose(adata.obs["cell_type_confidence"].to_numpy(), expected)
    # confidence = share of the cluster's cells whose own best type is the cluster's best type
    first = table.iloc[0]
    members = adata.obs["leiden"].astype(str) == first["cluster"]
    assert first["confidence"] == pytest.approx(
        (scores[members.to_numpy()].idxmax(axis=1) == first["top_type"]).mean()
    )


def test_cluster_without_recognisable_markers_is_unassigned(atlas, panel):
    adata = atlas.copy()
    # 80 cells whose panel marker genes are all silent: they look like no entry of the panel
    rng = np.random.default_rng(0)
    picks = rng.choice(adata.n_obs, size=80, replace=False)
    blank = adata[picks].copy()
    markers = {g for e in panel["cell_types"].values() for g in e["markers"]}
    silent = adata.var_names.isin(list(markers))
    x = blank.X.toarray()
    x[:, silent] = 0
    blank.X = sp.csr_matrix(x)
    blank.obs_names = [f"blank:{i}" for i in range(blank.n_obs)]
    blank.obs["leiden"] = "blank"
    combined = ad.concat([adata, blank], merge="same")
    combined.obs["leiden"] = combined.obs["leiden"].astype(str).astype("category")
    scores, _ = score_cell_types(combined, panel, seed=0)
    table = annotate_clusters(combined, scores, cluster_key="leiden", **CUTOFFS).set_index(
        "cluster"
    )
    assert table.loc["blank", "cell_type"] == UNASSIGNED
    assert not table.loc["blank", "assigned"]
    assert (combined.obs.loc[combined.obs["leiden"] == "blank", "cell_type"] == UNASSIGNED).all()
    assert table.drop(index="blank")["assigned"].mean() > 0.8


def test_thresholds_decide_assignment(atlas, panel):
    adata = atlas.copy()
    scores, _ = score_cell_types(adata, panel, seed=0)
    table = annotate_clusters(adata, scores, min_score=0.0, min_margin=0.0)
    assert table["assigned"].all()
    strict = annotate_clusters(adata, scores, min_score=0.0, min_margin=np.inf)
    assert not strict["assigned"].any()
    assert set(adata.obs["cell_type"].cat.categories) == {UNASSIGNED}
    with pytest.raises(UserInputError, match=r"lacks column\(s\) \['louvain'\]"):
        annotate_clusters(adata, scores, cluster_key="louvain", **CUTOFFS)


def test_same_seed_gives_identical_labels(atlas, panel):
    first, second = atlas.copy(), atlas.copy()
    scores_1, _ = score_cell_types(first, panel, seed=7)
    scores_2, _ = score_cell_types(second, panel, seed=7)
    pd.testing.assert_frame_equal(scores_1, scores_2)
    table_1 = annotate_clusters(first, scores_1, **CUTOFFS)
    table_2 = annotate_clusters(second, scores_2, **CUTOFFS)
    pd.testing.assert_frame_equal(table_1, table_2)
    assert first.obs["cell_type"].equals(second.obs["cell_type"])


# ---------------------------------------------------------------------------------- CellTypist
def test_celltypist_with_a_locally_trained_model(atlas, tmp_path, monkeypatch):
    import celltypist
    from celltypist import models

    def no_download(*args, **kwargs):
        raise AssertionError("CellTypist tried to download a model")

    monkeypatch.setattr(models, "download_models", no_download)

    # train on one cord and one adult sample (log1p CP10k, as CellTypist expects) ...
    train_cells = atlas.obs["sample"].isin(["CB1", "AD1"]).to_numpy()
    training = ad.AnnData(
        X=sp.csr_matrix(atlas.layers["counts"][train_cells], dtype=np.float32),
        obs=atlas.obs.loc[train_cells, ["true_cell_type"]].astype(str),
        var=pd.DataFrame(index=atlas.var_names),
    )
    training.X = training.X.multiply(1e4 / training.X.sum(axis=1)).tocsr()
    training.X.data = np.log1p(training.X.data)
    # SGD: celltypist 1.7.1's default LogisticRegression(multi_class=...) fails on
    # scikit-learn >= 1.8; the SGD logistic classifier trains the same kind of model
    model = celltypist.train(
        training, labels="true_cell_type", use_SGD=True, n_jobs=1, max_iter=50, random_state=0
    )
    path = tmp_path / "tiny_model.pkl"
    model.write(str(path))

    # ... and annotate the other two samples from the file
    test = atlas[~train_cells].copy()
    table = celltypist_annotate(test, path, cluster_key="leiden", majority_voting=True)
    assert table.index.equals(test.obs_names)
    assert {"celltypist_label", "celltypist_conf"} <= set(test.obs.columns)
    assert ((test.obs["celltypist_conf"] >= 0) & (test.obs["celltypist_conf"] <= 1)).all()
    truth = test.obs["true_cell_type"].astype(str)
    assert (table["celltypist_predicted"] == truth).mean() >= 0.9
    assert (test.obs["celltypist_label"].astype(str) == truth).mean() >= 0.85
    # majority voting: one label per cluster
    assert (test.obs.groupby("leiden", observed=True)["celltypist_label"].nunique() == 1).all()
    assert "celltypist_label" not in atlas.obs  # the input passed in was a copy


def test_celltypist_missing_model_is_a_user_error(atlas, tmp_path):
    with pytest.raises(UserInputError, match="never downloads"):
        celltypist_annotate(atlas.copy(), tmp_path / "Immune_All_Low.pkl")
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(UserInputError, match="could not be read"):
        celltypist_annotate(atlas.copy(), garbage)
