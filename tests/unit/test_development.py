"""The fetal-to-adult developmental axis: relative to adult donors, and projected on a reference."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cordatlas.atlas.build import normalise
from cordatlas.compare.development import (
    AXIS_COLUMNS,
    development_axis,
    ontogeny_genes,
    ontogeny_orientation,
    project_development_axis,
    read_development_reference,
    replicate_gene_means,
)
from cordatlas.compare.signatures import score_signatures, summarise_by_replicate
from cordatlas.demo.simulate import simulate_study
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import load_gene_sets
from cordatlas.params import default_params
from cordatlas.plotting.signatures import plot_development_axis

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "config" / "signatures.yaml"
#: Adult donors have few progenitors in the simulator; see tests/unit/test_signatures.py.
MIN_CELLS = 3
COMPARISON = dataclasses.replace(default_params().comparison, min_cells_per_replicate=MIN_CELLS)
PROGENITORS_AND_ERYTHROID = ("HSC_MPP", "myeloid_progenitor", "erythroid_progenitor", "erythroid")


def _atlas(*, condition_effect: bool, seed: int) -> ad.AnnData:
    samples = [f"CB{i}" for i in range(1, 5)] + [f"AD{i}" for i in range(1, 5)]
    sheet = pd.DataFrame(
        {"sample": samples, "donor": samples, "condition": ["cord_blood"] * 4 + ["adult"] * 4}
    )
    study = simulate_study(
        sheet, n_cells_per_sample=1000, n_genes=2000, seed=seed, condition_effect=condition_effect
    )
    adata = study.adata[study.adata.obs["artefact"] == "none"].copy()
    adata.obs_names = (
        adata.obs["sample"].astype(str) + ":" + adata.obs["barcode"].astype(str)
    ).to_numpy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    normalise(adata)
    return adata


def _axis(adata: ad.AnnData, library: dict) -> pd.DataFrame:
    scores, report = score_signatures(adata, library, seed=0, potency=False)
    summary = summarise_by_replicate(scores, adata.obs, COMPARISON)
    return development_axis(summary, library, scoring_report=report)


@pytest.fixture(scope="module")
def library() -> dict:
    return load_gene_sets(LIBRARY)


@pytest.fixture(scope="module")
def atlas() -> ad.AnnData:
    return _atlas(condition_effect=True, seed=11)


def test_orientation_follows_expectations_and_cell_types(library):
    assert ontogeny_orientation(library, "HSC_MPP") == {"fetal_programme": 1}
    assert ontogeny_orientation(library, "erythroid") == {
        "fetal_haemoglobin": 1,
        "globin_switch_bcl11a": -1,
    }
    assert ontogeny_orientation(library, "CD4_naive") == {}
    assert {"LIN28B", "HBG1", "BCL11A"} <= set(ontogeny_genes(library))


def test_cord_donors_sit_above_adult_donors(atlas, library):
    axis = _axis(atlas, library)
    assert list(axis.columns) == AXIS_COLUMNS
    assert set(axis["cell_type"]) == set(PROGENITORS_AND_ERYTHROID)
    for cell_type in PROGENITORS_AND_ERYTHROID:
        part = axis[axis["cell_type"] == cell_type]
        cord = part.loc[part["condition"] == "cord_blood", "axis_score"]
        adult = part.loc[part["condition"] == "adult", "axis_score"]
        assert len(cord) == 4 and len(adult) >= 2, cell_type
        assert cord.min() > adult.max(), cell_type
        assert cord.mean() > 2.0, cell_type
    erythroid = axis[axis["cell_type"] == "erythroid"].iloc[0]
    assert erythroid["features"] == "+fetal_haemoglobin,-globin_switch_bcl11a"
    assert erythroid["n_genes"] == 3


def test_null_study_does_not_separate_donors(library):
    axis = _axis(_atlas(condition_effect=False, seed=11), library)
    separated = 0
    for cell_type, part in axis.groupby("cell_type"):
        cord = part.loc[part["condition"] == "cord_blood", "axis_score"]
        adult = part.loc[part["condition"] == "adult", "axis_score"]
        separated += int(cord.min() > adult.max())
        assert abs(cord.mean()) < 2.5, cell_type
    assert separated <= 1


def _summary(values: dict[str, float], condition: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type": "HSC_MPP",
            "replicate": list(values),
            "condition": [condition[r] for r in values],
            "signature": "fetal_programme",
            "n_cells": 20,
            "mean_score": list(values.values()),
        }
    )


def test_axis_units_and_pooled_sd_fallback(library):
    condition = {"A1": "adult", "A2": "adult", "C1": "cord_blood", "C2": "cord_blood"}
    spread = _axis_from(library, {"A1": 0.0, "A2": 0.2, "C1": 1.0, "C2": 1.2}, condition)
    assert set(spread["scale"]) == {"reference_sd"}
    sd = np.std([0.0, 0.2], ddof=1)
    assert spread.set_index("replicate").at["C1", "axis_score"] == pytest.approx((1.0 - 0.1) / sd)
    flat = _axis_from(library, {"A1": 0.1, "A2": 0.1, "C1": 1.0, "C2": 1.4}, condition)
    assert set(flat["scale"]) == {"pooled_sd"}
    pooled = np.sqrt(np.var([1.0, 1.4], ddof=1) / 2)  # adults add 0 with 1 dof, cords 1 dof
    assert flat.set_index("replicate").at["C2", "axis_score"] == pytest.approx(1.3 / pooled)
    none = _axis_from(library, {"C1": 1.0, "C2": 1.4}, condition)
    assert none["axis_score"].isna().all()
    assert set(none["scale"]) == {"no_reference_replicates"}


def _axis_from(library, values, condition):
    return development_axis(_summary(values, condition), library)


# ============================================================================================
# With a reference
# ============================================================================================
def test_projection_places_replicates_on_the_adult_fetal_line():
    reference = pd.DataFrame(
        {
            "gene": ["G1", "G2", "G3"],
            "cell_type": "HSC_MPP",
            "fetal": [2.0, 0.0, 1.0],
            "adult": [0.0, 1.0, 1.0],  # G3 carries no information
        }
    )
    expression = pd.DataFrame(
        {
            "cell_type": "HSC_MPP",
            "replicate": ["adultlike"] * 3 + ["halfway"] * 3 + ["fetallike"] * 3,
            "condition": ["adult"] * 3 + ["cord_blood"] * 6,
            "gene": ["G1", "G2", "G3"] * 3,
            "n_cells": 10,
            "mean_expression": [0.0, 1.0, 5.0, 1.0, 0.5, 0.0, 2.0, 0.0, 1.0],
        }
    )
    axis = project_development_axis(expression, reference).set_index("replicate")
    assert axis.at["adultlike", "axis_score"] == pytest.approx(0.0)
    assert axis.at["halfway", "axis_score"] == pytest.approx(0.5)
    assert axis.at["fetallike", "axis_score"] == pytest.approx(1.0)
    assert set(axis["n_genes"]) == {2}
    assert set(axis["method"]) == {"reference_projection"}


def test_reference_from_an_independent_study(tmp_path, atlas, library):
    """A reference built from another simulated study (cord cells standing in for fetal)."""
    other = _atlas(condition_effect=True, seed=12)
    genes = ontogeny_genes(library)
    ref_means = replicate_gene_means(other, genes, COMPARISON)
    reference = (
        ref_means.groupby(["gene", "cell_type", "condition"])["mean_expression"]
        .mean()
        .unstack("condition")
        .rename(columns={"cord_blood": "fetal"})
        .reset_index()[["gene", "cell_type", "fetal", "adult"]]
        .dropna()
    )
    path = tmp_path / "reference.tsv"
    reference.to_csv(path, sep="\t", index=False)
    expression = replicate_gene_means(atlas, genes, COMPARISON)
    axis = project_development_axis(expression, read_development_reference(path), library=library)
    # only where an ontogeny claim applies: no T, B, NK or myeloid cells on the axis
    assert set(axis["cell_type"]) <= set(PROGENITORS_AND_ERYTHROID)
    for cell_type in ("HSC_MPP", "myeloid_progenitor", "erythroid"):
        part = axis[axis["cell_type"] == cell_type]
        cord = part.loc[part["condition"] == "cord_blood", "axis_score"]
        adult = part.loc[part["condition"] == "adult", "axis_score"]
        assert cord.min() > adult.max(), cell_type
        assert 0.6 < cord.mean() < 1.4, cell_type
        assert -0.4 < adult.mean() < 0.4, cell_type


def test_reference_that_barely_separates_fetal_from_adult_is_skipped():
    reference = pd.DataFrame(
        {"gene": ["G1", "G2"], "cell_type": "HSC_MPP", "fetal": [1.05, 2.0], "adult": [1.0, 1.98]}
    )
    expression = pd.DataFrame(
        {
            "cell_type": "HSC_MPP",
            "replicate": ["R1", "R1"],
            "condition": "adult",
            "gene": ["G1", "G2"],
            "n_cells": 10,
            "mean_expression": [1.5, 1.0],
        }
    )
    assert project_development_axis(expression, reference).empty
    kept = project_development_axis(expression, reference, min_distance=0.01)
    assert len(kept) == 1


def test_gene_means_match_a_direct_average(atlas):
    means = replicate_gene_means(atlas, ["HBG2", "NOTAGENE"], COMPARISON)
    assert set(means["gene"]) == {"HBG2"}
    row = means[(means["cell_type"] == "erythroid") & (means["replicate"] == "CB2")].iloc[0]
    cells = ((atlas.obs["cell_type"] == "erythroid") & (atlas.obs["donor"] == "CB2")).to_numpy()
    direct = atlas[cells, "HBG2"].X.toarray().mean()
    assert row["mean_expression"] == pytest.approx(direct, rel=1e-5)
    assert row["n_cells"] == int(cells.sum())


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("gene\tcell_type\tfetal\nLIN28B\tHSC_MPP\t1.0\n", "lacks column(s) ['adult']"),
        ("gene\tcell_type\tfetal\tadult\n", "no rows"),
        ("gene\tcell_type\tfetal\tadult\nLIN28B\tHSC_MPP\thigh\t0.1\n", "row 2"),
        ("gene\tcell_type\tfetal\tadult\nLIN28B\tHSC_MPP\t1.0\t-0.1\n", "cannot be negative"),
        (
            "gene\tcell_type\tfetal\tadult\nLIN28B\tHSC_MPP\t1\t0\nLIN28B\tHSC_MPP\t2\t0\n",
            "appears twice",
        ),
        ("gene\tcell_type\tfetal\tadult\n\tHSC_MPP\t1\t0\n", "'gene' is empty"),
    ],
)
def test_reference_errors_are_precise(tmp_path, text, needle):
    path = tmp_path / "reference.tsv"
    path.write_text(text)
    with pytest.raises(UserInputError) as err:
        read_development_reference(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_reference_file(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        read_development_reference(tmp_path / "none.tsv")


def test_axis_figures(tmp_path, atlas, library):
    path = tmp_path / "axis.png"
    plot_development_axis(_axis(atlas, library), path=path)
    assert path.stat().st_size > 5000
    empty = tmp_path / "empty.png"
    plot_development_axis(pd.DataFrame(columns=AXIS_COLUMNS), path=empty)
    assert empty.stat().st_size > 1000
