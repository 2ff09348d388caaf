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
from cordatlas.annotate.labels import (
    DECIMALS,
    EVIDENCE_COLUMNS,
    TABLE_COLUMNS,
    annotate_clusters,
    marker_evidence,
    rank_sets,
    score_cell_types,
)
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


def _lineages_of(panel: dict) -> dict[str, str]:
    return {name: entry["lineage"] for name, entry in panel["cell_types"].items()}


def _assert_cut_offs_hold(table: pd.DataFrame, cutoffs: dict = CUTOFFS) -> None:
    """Every label's own ranking clears the documented cut-offs; nothing else is labelled."""
    assigned = table[table["assigned"]]
    assert (assigned["score"] >= cutoffs["min_score"]).all(), assigned
    assert (assigned["margin"] >= cutoffs["min_margin"]).all(), assigned
    assert set(table["level"]) <= {"subtype", "lineage", UNASSIGNED}
    assert (table["assigned"] == (table["level"] != UNASSIGNED)).all()
    lineage_labels = table[table["level"] == "lineage"]
    assert (lineage_labels["cell_type"] == lineage_labels["lineage"] + "_lineage").all()


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
    lineage_rows = [f"{name}_lineage" for name in panel["lineages"]]
    assert list(report.index) == list(panel["cell_types"]) + lineage_rows
    assert set(report.loc[lineage_rows, "level"]) == {"lineage"}
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
    table = annotate_clusters(
        adata, scores, cluster_key="leiden", lineages=_lineages_of(panel), **CUTOFFS
    )
    truth = adata.obs["true_cell_type"].astype(str)
    in_panel = truth.isin(list(panel["cell_types"]))
    assert in_panel.all() and set(CELL_TYPES) <= set(panel["cell_types"])
    accuracy = (adata.obs["cell_type"].astype(str)[in_panel] == truth[in_panel]).mean()
    assert accuracy >= 0.9, accuracy

    assert list(table.columns) == TABLE_COLUMNS
    assert table["n_cells"].sum() == adata.n_obs
    assert set(table["cluster"]) == set(adata.obs["leiden"].astype(str))
    assert ((table["confidence"] >= 0) & (table["confidence"] <= 1)).all()
    ranked = table[table["runner_up"] != ""]
    assert np.allclose(ranked["margin"], ranked["score"] - ranked["runner_up_score"], atol=2e-6)
    _assert_cut_offs_hold(table)
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert adata.obs["cell_type_confidence"].dtype == np.float64
    stored = adata.obsm["cell_type_scores"]
    assert isinstance(stored, pd.DataFrame) and stored.index.equals(adata.obs_names)
    # a cell's confidence is its cluster's
    by_cluster = table.set_index("cluster")["confidence"]
    expected = adata.obs["leiden"].astype(str).map(by_cluster).to_numpy()
    assert np.allclose(adata.obs["cell_type_confidence"].to_numpy(), expected)
    # confidence = share of the cluster's cells whose own best candidate is the cluster's type
    first = table[table["level"] == "subtype"].iloc[0]
    members = (adata.obs["leiden"].astype(str) == first["cluster"]).to_numpy()
    lineage = panel["cell_types"][first["cell_type"]]["lineage"]
    siblings = [c for c in scores if panel["cell_types"].get(c, {}).get("lineage") == lineage]
    assert first["confidence"] == pytest.approx(
        (scores.loc[members, siblings].idxmax(axis=1) == first["top_type"]).mean()
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


# ------------------------------------------------------------------------- lineages and margins
def test_every_panel_lineage_has_cited_markers(panel):
    assert set(_lineages_of(panel).values()) <= set(panel["lineages"])
    for name, entry in panel["lineages"].items():
        assert entry["markers"] and entry["sources"] and entry["description"], name
    # MYB and TAL1 are HSC/MPP transcription factors too: no erythroid_progenitor marker
    assert not {"MYB", "TAL1"} & set(panel["cell_types"]["erythroid_progenitor"]["markers"])


@pytest.mark.parametrize(
    ("lineages", "message"),
    [
        (["T"], "'lineages' must be a mapping"),
        ({"T": {"markers": ["CD3D"]}}, r"lineage 'T' lacks field\(s\) \['sources'\]"),
        ({"T": {"markers": [], "sources": ["x"]}}, "lineage 'T' field 'markers'"),
        ({"unassigned": {"markers": ["CD3D"], "sources": ["x"]}}, "reserved"),
    ],
)
def test_invalid_lineages_name_the_lineage_and_field(tmp_path, lineages, message):
    content = _minimal_panel(B={"markers": ["MS4A1"], "sources": ["x"], "lineage": "B"})
    path = _write(tmp_path / "panel.yaml", {**content, "lineages": lineages})
    with pytest.raises(UserInputError, match=message):
        load_panel(path)


def test_cell_types_may_not_take_a_lineage_label(tmp_path):
    path = _write(
        tmp_path / "p.yaml", _minimal_panel(B_lineage={"markers": ["A"], "sources": ["x"]})
    )
    with pytest.raises(UserInputError, match="reserved for lineage labels"):
        load_panel(path)


def test_merge_keeps_and_extends_lineages(panel):
    extra = _minimal_panel(
        mast={"markers": ["TPSAB1", "CPA3"], "sources": ["x"], "lineage": "mast"}
    )
    extra["lineages"] = {"mast": {"markers": ["TPSAB1", "KIT"], "sources": ["x"]}}
    merged = merge_panels(panel, extra)
    assert list(merged["lineages"]) == [*panel["lineages"], "mast"]
    assert merged["lineages"]["T"] == panel["lineages"]["T"]


@pytest.mark.parametrize(
    ("scores", "passes", "margin"),
    [
        ({"a": 0.317, "b": 0.300}, False, 0.017),  # NK_lineage was once given at 0.017
        ({"a": 0.33, "b": 0.30}, True, 0.03),  # 0.33 - 0.30 = 0.0300000000000000266 in floats
        ({"a": 0.53, "b": 0.50}, True, 0.03),
        ({"a": 0.3299999, "b": 0.30}, True, 0.03),  # float32 noise: rounded to 6 decimals
        ({"a": 0.32999, "b": 0.30}, False, 0.02999),
        ({"a": 0.2, "b": 0.2}, False, 0.0),  # a tie names neither, even at min_margin 0
        ({"a": 0.2}, True, np.inf),  # nothing competes
        ({"a": 0.02, "b": -0.5}, False, 0.52),  # below min_score
    ],
)
def test_margin_rule_is_applied_as_documented(scores, passes, margin):
    ranking = rank_sets(pd.Series(scores), list(scores))
    assert ranking.margin == pytest.approx(margin, abs=10.0**-DECIMALS)
    assert ranking.passes(min_score=0.03, min_margin=0.03) is passes
    if margin == 0.0:
        assert not ranking.passes(min_score=0.0, min_margin=0.0)


def _cluster_atlas() -> ad.AnnData:
    """Two clusters, a and b, of 10 cells each (the tests supply their scores)."""
    obs = pd.DataFrame({"leiden": ["a"] * 10 + ["b"] * 10}, index=[f"c{i}" for i in range(20)])
    adata = ad.AnnData(np.zeros((20, 1), dtype=np.float32), obs=obs)
    adata.obs["leiden"] = adata.obs["leiden"].astype("category")
    return adata


def test_lineage_decides_first_and_labels_when_subtypes_are_unclear():
    lineages = {"NK_dim": "NK", "NK_bright": "NK", "CD8_eff": "T"}
    # cluster a: CD8_eff leads NK_dim (shared cytotoxic genes), but NK lineage markers win
    # cluster b: NK lineage clear, its two subtypes tie within 0.017: the lineage label
    a = {"NK_dim": 0.06, "NK_bright": 0.01, "CD8_eff": 0.10, "NK_lineage": 0.20, "T_lineage": 0.02}
    b = {"NK_dim": 0.317, "NK_bright": 0.300, "CD8_eff": 0.1, "NK_lineage": 0.3, "T_lineage": 0.0}
    adata = _cluster_atlas()
    scores = pd.DataFrame([a] * 10 + [b] * 10, index=adata.obs_names)
    table = annotate_clusters(adata, scores, lineages=lineages, **CUTOFFS).set_index("cluster")
    assert table.loc["a", ["cell_type", "level", "lineage"]].tolist() == ["NK_dim", "subtype", "NK"]
    assert table.loc["a", "top_type_runner_up"] == "NK_bright"  # CD8_eff never competed
    assert table.loc["b", ["cell_type", "level"]].tolist() == ["NK_lineage", "lineage"]
    assert (
        table.loc["b", "margin"] == pytest.approx(0.3)
        and table.loc["b", "runner_up"] == "T_lineage"
    )
    assert table.loc["b", "top_type_margin"] == pytest.approx(0.017)
    _assert_cut_offs_hold(table.reset_index())
    # no lineage passes (T and NK within 0.01): the subtypes compete across lineages
    flat = {**a, "T_lineage": 0.195}
    scores = pd.DataFrame([flat] * 10 + [b] * 10, index=adata.obs_names)
    table = annotate_clusters(adata, scores, lineages=lineages, **CUTOFFS).set_index("cluster")
    assert table.loc["a", ["cell_type", "lineage"]].tolist() == ["CD8_eff", "T"]
    # and nothing passes at all: unassigned
    none = {k: 0.01 for k in a}
    scores = pd.DataFrame([none] * 10 + [b] * 10, index=adata.obs_names)
    table = annotate_clusters(adata, scores, lineages=lineages, **CUTOFFS).set_index("cluster")
    assert table.loc["a", "cell_type"] == UNASSIGNED and table.loc["a", "level"] == UNASSIGNED


def test_subtype_markers_missing_from_the_data_give_the_lineage(atlas, panel):
    b_types = [n for n, e in panel["cell_types"].items() if e["lineage"] == "B"]
    drop = {g for n in b_types for g in panel["cell_types"][n]["markers"]}
    adata = atlas[:, ~atlas.var_names.isin(list(drop))].copy()
    scores, report = score_cell_types(adata, panel, seed=0)
    assert not set(b_types) & set(scores.columns)  # no B subtype can be scored
    table = annotate_clusters(adata, scores, lineages=_lineages_of(panel), **CUTOFFS)
    truth = adata.obs["true_cell_type"].astype(str).isin(b_types)
    b_clusters = adata.obs.loc[truth, "leiden"].astype(str).value_counts()
    b_clusters = b_clusters[b_clusters > 20].index
    labels = table.set_index("cluster").loc[b_clusters, "cell_type"]
    assert len(labels) and (labels == "B_lineage").all(), labels


# ------------------------------------------------------------------- each sample's own genes
def test_cells_are_scored_on_their_own_samples_genes(atlas, panel):
    adata = atlas.copy()
    shared = set(panel["cell_types"]["B_memory"]["markers"])
    unmeasured = [  # B_naive's own markers, "lost" in AD1
        g for g in panel["cell_types"]["B_naive"]["markers"]
        if g in adata.var_names and g not in shared
    ]  # fmt: skip
    assert len(unmeasured) >= 2, unmeasured
    in_ad1 = (adata.obs["sample"] == "AD1").to_numpy()
    x = adata.X.toarray()
    x[np.ix_(in_ad1, adata.var_names.isin(unmeasured))] = 0.0  # the outer join's zero-fill
    adata.X = sp.csr_matrix(x)
    adata.uns["unmeasured_genes"] = {"AD1": unmeasured}
    scores, report = score_cell_types(adata, panel, seed=0)
    # AD1's cells: exactly the scores of AD1 alone on its own measured genes
    alone = adata[in_ad1, ~adata.var_names.isin(unmeasured)].copy()
    del alone.uns["unmeasured_genes"]
    alone_scores, _ = score_cell_types(alone, panel, seed=0)
    pd.testing.assert_series_equal(
        scores.loc[in_ad1, "B_naive"], alone_scores["B_naive"], check_names=False
    )
    row = report.set_index("cell_type").loc["B_naive"]
    assert row["markers_unmeasured_in"] == f"AD1: {','.join(unmeasured)}"
    assert set(unmeasured) <= set(row["markers_used"].split(","))  # measured elsewhere
    # the false zeros, taken as measured, lower AD1's naive B scores: that is what is avoided
    naive = (adata.obs["true_cell_type"] == "B_naive").to_numpy() & in_ad1
    del adata.uns["unmeasured_genes"]
    zero_filled, _ = score_cell_types(adata, panel, seed=0)
    assert zero_filled.loc[naive, "B_naive"].mean() < scores.loc[naive, "B_naive"].mean() - 0.1


def test_marker_evidence_lists_detected_and_unmeasured_markers(atlas, panel):
    adata = atlas.copy()
    adata.uns["unmeasured_genes"] = {s: ["CD14"] for s in adata.obs["sample"].unique()}
    x = adata.X.toarray()
    x[:, list(adata.var_names).index("CD14")] = 0
    adata.X = sp.csr_matrix(x)
    scores, _ = score_cell_types(adata, panel, seed=0)
    table = annotate_clusters(adata, scores, lineages=_lineages_of(panel), **CUTOFFS)
    evidence = marker_evidence(adata, table, panel, min_detected_fraction=0.1)
    assert list(evidence.columns) == EVIDENCE_COLUMNS
    assert set(evidence["cluster"]) == set(table["cluster"])
    assert set(evidence["step"]) == {"lineage", "subtype"}
    top = evidence[(evidence["step"] == "subtype") & (evidence["role"] == "top")].set_index(
        "cluster"
    )
    assert (top["marker_set"] == table.set_index("cluster").loc[top.index, "top_type"]).all()
    counts = top["n_detected"] + top["markers_not_detected"].str.count(",") + 1
    counts[top["markers_not_detected"] == ""] = top["n_detected"]
    assert (counts == top["n_measured"]).all()
    mono = top[top["marker_set"] == "CD14_monocyte"]
    assert len(mono)
    for listed in mono["markers_unmeasured"].str.split(","):
        # CD14: in the data but measured by no sample; the others: not in the data at all
        assert "CD14" in listed and not set(listed) - {"CD14"} & set(adata.var_names)
    # detection fractions are the cluster's share of cells with a count
    first = mono.index[0]
    members = (adata.obs["leiden"].astype(str) == first).to_numpy()
    lyz = float((adata[members, "LYZ"].X.toarray() > 0).mean())
    assert f"LYZ={lyz:.2f}" in mono.loc[first, "fraction_detected"].split(",")
    assert ("LYZ" in mono.loc[first, "markers_detected"].split(",")) == (lyz >= 0.1)


# ------------------------------------------------------------ labelled real data (shared/data)
def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold on log1p ADT counts: the cut maximising the between-class variance."""
    values = np.sort(values)
    best, cut = -1.0, values[0]
    for t in np.unique(values)[:-1]:
        low, high = values[values <= t], values[values > t]
        spread = low.size * high.size * (low.mean() - high.mean()) ** 2
        if spread > best:
            best, cut = spread, t
    return float(cut)


def annotate_real(adata: ad.AnnData, panel: dict, *, batch: str | None = None) -> pd.DataFrame:
    """The project's steps with the default config: normalise, HVG, PCA, (Harmony), Leiden, panel."""
    atlas_params = default_params().atlas
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    normalise(adata)
    select_highly_variable_genes(adata, n_top_genes=atlas_params.n_top_genes, batch_key=batch)
    run_pca(adata, n_pcs=atlas_params.n_pcs, seed=0)
    rep = integrate(adata, method="harmony", key=batch, seed=0) if batch else "X_pca"
    cluster(
        adata,
        use_rep=rep,
        n_neighbors=atlas_params.n_neighbors,
        resolutions=[atlas_params.working_resolution],
        working_resolution=atlas_params.working_resolution,
        seed=0,
    )
    scores, _ = score_cell_types(adata, panel, seed=0)
    return annotate_clusters(adata, scores, lineages=_lineages_of(panel), **CUTOFFS)


def predicted_lineage(adata: ad.AnnData, panel: dict) -> pd.Series:
    lineages = _lineages_of(panel)
    labels = adata.obs["cell_type"].astype(str)
    return labels.map(lambda c: c.removesuffix("_lineage") if c.endswith("_lineage") else
                      lineages.get(c, c))  # fmt: skip


@pytest.fixture(scope="module")
def cord_dropseq(shared_data, panel):
    """GSE100866 cord blood (Drop-seq, CD8-gated sorts) annotated; truth from its ADT counts."""
    path = shared_data / "cord_cbmc_cd8gated_dropseq_gse100866" / "cd8_merged_cord_blood.h5ad"
    raw = ad.read_h5ad(path)
    adt = np.log1p(
        pd.DataFrame(np.asarray(raw.obsm["ADT_umi"]), columns=list(raw.uns["ADT_names"]))
    )
    cd3 = (adt["CD3"] > _otsu(adt["CD3"].to_numpy())).to_numpy()
    cd56 = (adt["CD56"] > _otsu(adt["CD56"].to_numpy())).to_numpy()
    truth = np.where(cd3, "T", np.where(cd56, "NK", "other"))
    adata = ad.AnnData(raw.X, obs=pd.DataFrame({"sample": "CB", "truth": truth},
                       index=raw.obs_names), var=pd.DataFrame(index=raw.var_names))  # fmt: skip
    table = annotate_real(adata, panel)
    return adata, table


def test_real_cord_blood_lineages_match_protein(cord_dropseq, panel):
    """CD3+ cells are T, CD3- CD56+ cells NK (ADT); before lineage-first labelling: 0.21."""
    adata, table = cord_dropseq
    gated = adata.obs["truth"] != "other"
    predicted = predicted_lineage(adata, panel)[gated]
    accuracy = float((predicted == adata.obs.loc[gated, "truth"]).mean())
    print(f"GSE100866 cord: lineage accuracy {accuracy:.3f} on {int(gated.sum())} ADT-gated cells")
    assert accuracy >= 0.8, (accuracy, pd.crosstab(adata.obs["truth"], predicted))
    _assert_cut_offs_hold(table)


def test_real_cord_hspc_cluster_is_not_erythroid(cord_dropseq, panel):
    """The cluster of CD34+ CRHBP+ SPINK2+ cells is HSC/MPP (it was erythroid_progenitor)."""
    adata, table = cord_dropseq
    expressing = (
        pd.DataFrame((adata[:, ["CD34", "CRHBP", "SPINK2"]].X.toarray() > 0), index=adata.obs_names)
        .groupby(adata.obs["leiden"].astype(str).to_numpy())
        .mean()
    )
    hspc = expressing.mean(axis=1).idxmax()
    assert expressing.loc[hspc].min() >= 0.1, expressing.loc[hspc]
    label = table.set_index("cluster").loc[hspc]
    assert label["cell_type"] in {"HSC_MPP", "progenitor_lineage"}, label
    assert label["lineage"] == "progenitor"


@pytest.fixture(scope="module")
def pbmc_citeseq(shared_data, panel):
    """The two 10x CITE-seq PBMC subsets (two gene universes) annotated; truth from ADT."""
    folder = shared_data / "adult_pbmc_10x_citeseq_200cells_scvi"
    parts = []
    for name in ("10k", "5k"):
        raw = ad.read_h5ad(folder / f"pbmc_{name}_protein_v3.h5ad")
        proteins = [p.split("_")[0] for p in raw.uns["protein_names"]]
        adt = np.log1p(pd.DataFrame(np.asarray(raw.obsm["protein_expression"]), columns=proteins))
        pos = {
            p: (adt[p] > _otsu(adt[p].to_numpy())).to_numpy()
            for p in ("CD3", "CD19", "CD14", "CD56")
        }
        n_lineages = pos["CD3"].astype(int) + pos["CD19"] + pos["CD14"]
        truth = np.select(
            [n_lineages > 1, pos["CD3"], pos["CD19"], pos["CD14"], pos["CD56"]],
            ["other", "T", "B", "myeloid", "NK"],
            default="other",
        )
        obs = pd.DataFrame({"sample": name, "truth": truth}, index=f"{name}:" + raw.obs_names)
        parts.append(ad.AnnData(raw.X, obs=obs, var=pd.DataFrame(index=raw.var_names)))
    adata = ad.concat(parts, join="inner")
    table = annotate_real(adata, panel, batch="sample")
    return adata, table


def test_real_pbmc_lineages_match_protein(pbmc_citeseq, panel):
    adata, table = pbmc_citeseq
    gated = adata.obs["truth"] != "other"
    predicted = predicted_lineage(adata, panel)[gated].replace({"dendritic": "myeloid"})
    accuracy = float((predicted == adata.obs.loc[gated, "truth"]).mean())
    print(
        f"10x CITE-seq PBMC: lineage accuracy {accuracy:.3f} on {int(gated.sum())} ADT-gated cells"
    )
    assert accuracy >= 0.9, (accuracy, pd.crosstab(adata.obs["truth"], predicted))
    _assert_cut_offs_hold(table)
