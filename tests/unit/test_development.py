"""The fetal-to-adult developmental axis (external reference only) and the cycling fraction per donor."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cordatlas.compare.cycling import (
    FRACTION_COLUMNS,
    cell_cycle_phases,
    cycling_fractions,
    cycling_tests,
)
from cordatlas.compare.development import (
    AXIS_COLUMNS,
    CONTRAST_COLUMNS,
    NO_REFERENCE,
    axis_without_reference,
    development_contrast,
    ontogeny_cell_types,
    ontogeny_genes,
    ontogeny_orientation,
    project_development_axis,
    read_development_reference,
    replicate_gene_means,
)
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.demo.simulate import simulate_study
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import load_gene_sets
from cordatlas.params import default_params
from cordatlas.plotting.signatures import plot_development_axis

from .simulated import healthy_cells

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "config" / "signatures.yaml"
#: Adult donors have few progenitors in the simulator; see tests/unit/test_signatures.py.
MIN_CELLS = 3
COMPARISON = dataclasses.replace(default_params().comparison, min_cells_per_replicate=MIN_CELLS)
CONTRAST = default_params().contrast  # cord_blood vs adult
PROGENITORS_AND_ERYTHROID = ("HSC_MPP", "myeloid_progenitor", "erythroid_progenitor", "erythroid")


def _atlas(*, condition_effect: bool, seed: int) -> ad.AnnData:
    samples = [f"CB{i}" for i in range(1, 5)] + [f"AD{i}" for i in range(1, 5)]
    sheet = pd.DataFrame(
        {"sample": samples, "donor": samples, "condition": ["cord_blood"] * 4 + ["adult"] * 4}
    )
    study = simulate_study(
        sheet, n_cells_per_sample=1000, n_genes=2000, seed=seed, condition_effect=condition_effect
    )
    return healthy_cells(study.adata)


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


# ============================================================================================
# Synthetic HSC_MPP-like cells: expression = adult + t (fetal - adult) + noise, t planted
# ============================================================================================
GENES = ["LIN28B", "HMGA2", "IGF2BP3", "FILLER1", "FILLER2"]
ADULT = np.array([1.2, 1.4, 1.1])
FETAL = np.array([3.2, 2.4, 2.1])  # direction (2, 1, 1)


def _reference(cell_type: str = "HSC_MPP") -> pd.DataFrame:
    return pd.DataFrame({"gene": GENES[:3], "cell_type": cell_type, "fetal": FETAL, "adult": ADULT})


def _planted(positions: dict[str, tuple[str, float]], *, n_cells: int = 60, seed: int = 0):
    """Cells of each donor at planted axis position t (noise sd 0.3 per gene), as an AnnData."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for donor, (condition, t) in positions.items():
        centre = ADULT + t * (FETAL - ADULT)
        x = np.clip(centre + rng.normal(0, 0.3, (n_cells, 3)), 0, None)
        blocks.append(np.hstack([x, np.ones((n_cells, 2))]))
        obs += [{"cell_type": "HSC_MPP", "donor": donor, "condition": condition}] * n_cells
    obs = pd.DataFrame(obs, index=[f"c{i}" for i in range(len(obs))])
    return ad.AnnData(
        X=np.vstack(blocks).astype(np.float32), obs=obs, var=pd.DataFrame(index=GENES)
    )


def test_projection_of_a_single_cell_is_computed_by_hand(library):
    adata = ad.AnnData(
        X=np.array([[2.2, 1.9, 1.6, 1, 1], [1.2, 1.4, 1.1, 1, 1], [3.2, 2.4, 2.1, 1, 1]]),
        obs=pd.DataFrame(
            {"cell_type": "HSC_MPP", "donor": ["D1", "D2", "D3"], "condition": "cord_blood"},
            index=["a", "b", "c"],
        ),
        var=pd.DataFrame(index=GENES),
    )
    one = dataclasses.replace(COMPARISON, min_cells_per_replicate=1)
    axis = project_development_axis(adata, _reference(), library, one).set_index("replicate")
    # (x - a) = (1, 0.5, 0.5), d = (2, 1, 1): (2 + 0.5 + 0.5) / 6 = 0.5
    assert axis.at["D1", "axis_score"] == pytest.approx(0.5)
    assert axis.at["D2", "axis_score"] == pytest.approx(0.0)
    assert axis.at["D3", "axis_score"] == pytest.approx(1.0)
    assert set(axis["n_genes"]) == {3}
    assert set(axis["method"]) == {"reference_projection"}
    assert axis["ci_low"].isna().all()  # one cell: no interval


def test_donor_intervals_cover_the_planted_position_95_percent_of_the_time(library):
    truth = {f"D{i}": ("cord_blood", 0.5) for i in range(300)}
    axis = project_development_axis(
        _planted(truth, n_cells=30, seed=1), _reference(), library, COMPARISON
    )
    covered = ((axis["ci_low"] < 0.5) & (axis["ci_high"] > 0.5)).mean()
    assert 0.92 <= covered <= 0.98


def test_ci_covers_a_planted_shift(library):
    truth = {f"C{i}": ("cord_blood", 0.5 + 0.05 * i) for i in range(4)}
    truth |= {f"A{i}": ("adult", 0.05 * i) for i in range(4)}
    axis = project_development_axis(_planted(truth), _reference(), library, COMPARISON)
    assert list(axis.columns) == AXIS_COLUMNS
    axis = axis.set_index("replicate")
    assert (axis["ci_high"] - axis["ci_low"] < 0.3).all()  # 60 cells: an informative interval
    contrast = development_contrast(axis.reset_index(), CONTRAST, min_donors=2)
    assert list(contrast.columns) == CONTRAST_COLUMNS
    row = contrast.iloc[0]
    assert row["evidence"] == "donor_level" and row["family"] == "prespecified"
    assert row["n_condition"] == 4 and row["n_reference"] == 4
    assert row["ci_low"] < 0.5 < row["ci_high"]
    assert row["ci_low"] > 0  # the planted difference is detected
    cord = axis.loc[axis["condition"] == "cord_blood", "axis_score"]
    adult = axis.loc[axis["condition"] == "adult", "axis_score"]
    assert row["difference"] == pytest.approx(cord.mean() - adult.mean())


def test_one_donor_a_side_is_not_estimable(library):
    axis = project_development_axis(
        _planted({"C1": ("cord_blood", 0.6), "A1": ("adult", 0.0)}),
        _reference(),
        library,
        COMPARISON,
    )
    assert len(axis) == 2 and axis["axis_score"].notna().all()  # the donors are still placed
    row = development_contrast(axis, CONTRAST, min_donors=2).iloc[0]
    assert row["evidence"] == "not_testable"
    assert "not estimable" in row["note"] and "development_min_donors" in row["note"]
    assert np.isnan(row["ci_low"]) and np.isnan(row["pvalue"])


def test_every_ontogeny_cell_type_gets_a_row(library):
    adata = _planted({"C1": ("cord_blood", 0.6), "A1": ("adult", 0.0)})
    adata.obs["cell_type"] = ["HSC_MPP"] * 60 + ["CD4_naive"] * 60
    # the reference covers another type only: HSC_MPP is listed, not silently absent
    axis = project_development_axis(adata, _reference("erythroid"), library, COMPARISON)
    assert list(axis["cell_type"]) == ["HSC_MPP"]
    assert axis.iloc[0]["scale"] == "too_few_reference_genes"
    assert "HSC_MPP" in axis.iloc[0]["note"]
    contrast = development_contrast(axis, CONTRAST, min_donors=2)
    assert list(contrast["cell_type"]) == ["HSC_MPP"]
    assert contrast.iloc[0]["evidence"] == "not_testable"
    assert contrast.iloc[0]["note"] == axis.iloc[0]["note"]


def test_without_a_reference_the_axis_is_not_estimable(atlas, library):
    types = ontogeny_cell_types(atlas.obs, library, COMPARISON)
    assert set(PROGENITORS_AND_ERYTHROID) <= set(types)
    assert "CD4_naive" in set(atlas.obs["cell_type"]) and "CD4_naive" not in types
    axis = axis_without_reference(types, library)
    assert list(axis["cell_type"]) == types and "HSC_MPP" in types
    assert axis["axis_score"].isna().all() and set(axis["scale"]) == {NO_REFERENCE}
    contrast = development_contrast(axis, CONTRAST, min_donors=2)
    assert set(contrast["evidence"]) == {"not_testable"}
    assert contrast["note"].str.contains("not estimable without an external reference").all()


def test_reference_from_an_independent_study(atlas, library):
    """A reference built from another simulated study (cord cells standing in for fetal)."""
    other = _atlas(condition_effect=True, seed=12)
    ref_means = replicate_gene_means(other, ontogeny_genes(library), COMPARISON)
    reference = (
        ref_means.groupby(["gene", "cell_type", "condition"])["mean_expression"]
        .mean()
        .unstack("condition")
        .rename(columns={"cord_blood": "fetal"})
        .reset_index()[["gene", "cell_type", "fetal", "adult"]]
        .dropna()
    )
    axis = project_development_axis(atlas, reference, library, COMPARISON)
    assert set(axis["cell_type"]) == set(ontogeny_cell_types(atlas.obs, library, COMPARISON))
    for cell_type in ("HSC_MPP", "myeloid_progenitor", "erythroid"):
        part = axis[axis["cell_type"] == cell_type]
        cord = part.loc[part["condition"] == "cord_blood", "axis_score"]
        adult = part.loc[part["condition"] == "adult", "axis_score"]
        assert cord.min() > adult.max(), cell_type
        assert 0.6 < cord.mean() < 1.4, cell_type
        assert -0.4 < adult.mean() < 0.4, cell_type
    contrast = development_contrast(axis, CONTRAST, min_donors=2).set_index("cell_type")
    assert contrast.at["erythroid", "evidence"] == "donor_level"
    assert contrast.at["erythroid", "ci_low"] > 0


def test_reference_that_barely_separates_fetal_from_adult_is_not_estimable(library):
    reference = _reference().assign(fetal=ADULT + 0.05)
    adata = _planted({"C1": ("cord_blood", 0.6)})
    axis = project_development_axis(adata, reference, library, COMPARISON)
    assert axis.iloc[0]["scale"] == "reference_does_not_separate"
    kept = project_development_axis(adata, reference, library, COMPARISON, min_distance=0.01)
    assert kept.iloc[0]["method"] == "reference_projection"


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


def test_axis_figures(tmp_path, library):
    truth = {f"C{i}": ("cord_blood", 0.6) for i in range(3)} | {"A1": ("adult", 0.0)}
    axis = project_development_axis(_planted(truth), _reference(), library, COMPARISON)
    path = tmp_path / "axis.png"
    plot_development_axis(axis, path=path)
    assert path.stat().st_size > 5000
    empty = tmp_path / "empty.png"
    plot_development_axis(axis_without_reference(["HSC_MPP"], library), path=empty)
    assert empty.stat().st_size > 1000


# ============================================================================================
# Cycling fraction per donor
# ============================================================================================
def _cycling_atlas(library: dict, donors: dict[str, tuple[str, str, int, int]]) -> ad.AnnData:
    """Tiny log-normalised data, per donor (condition, cell type, cells, cycling cells).

    Cycling cells express 10 S genes (even-numbered cycling cells) or 10 G2/M genes (odd) at 3,
    other cells all 20 at 0.5; 300 background genes hold constant levels 0.1-3, so every
    control gene scanpy draws from a cycle gene's expression bin is above 0.5 in every cell.
    """
    sets = library["gene_sets"]
    s_genes = sets["cell_cycle_S"]["genes"][:10]
    g2m_genes = sets["cell_cycle_G2M"]["genes"][:10]
    background = np.linspace(0.1, 3.0, 300)
    rows, obs = [], []
    for donor, (condition, cell_type, n_cells, n_cycling) in donors.items():
        for k in range(n_cells):
            s = g2m = 0.5
            if k < n_cycling:
                s, g2m = (3.0, 0.5) if k % 2 == 0 else (0.5, 3.0)
            rows.append(np.concatenate([[s] * 10, [g2m] * 10, background]))
            obs.append({"cell_type": cell_type, "donor": donor, "condition": condition})
    names = [*s_genes, *g2m_genes, *(f"BG{i}" for i in range(300))]
    obs = pd.DataFrame(obs, index=[f"c{i}" for i in range(len(obs))])
    return ad.AnnData(X=np.vstack(rows).astype(np.float32), obs=obs, var=pd.DataFrame(index=names))


CYCLING_DONORS = {
    "C1": ("cord_blood", "HSC_MPP", 50, 18),
    "C2": ("cord_blood", "HSC_MPP", 50, 20),
    "C3": ("cord_blood", "HSC_MPP", 40, 18),
    "A1": ("adult", "HSC_MPP", 50, 3),
    "A2": ("adult", "HSC_MPP", 30, 3),
    "A3": ("adult", "HSC_MPP", 50, 7),
}


def _with_b_cells(donors):
    """The same donors plus B_naive cells cycling at the same rate in both conditions."""
    out = dict(donors)
    for donor, (condition, _, _, _) in donors.items():
        out[f"{donor}b"] = (condition, "B_naive", 40, 4)
    return out


def test_cycling_fraction_by_hand(library):
    adata = _cycling_atlas(library, CYCLING_DONORS)
    phases = cell_cycle_phases(adata, library, min_genes=3, min_score=0.3, seed=0)
    expected = []
    for _, _, n_cells, n_cycling in CYCLING_DONORS.values():
        expected += ["S" if k % 2 == 0 else "G2M" for k in range(n_cycling)]
        expected += ["G1"] * (n_cells - n_cycling)
    assert list(phases["phase"]) == expected
    one = dataclasses.replace(COMPARISON, min_cells_per_replicate=1)
    fractions = cycling_fractions(adata.obs, phases["cycling"], one)
    assert list(fractions.columns) == FRACTION_COLUMNS
    fractions = fractions.set_index("replicate")
    for donor, (condition, cell_type, n_cells, n_cycling) in CYCLING_DONORS.items():
        assert fractions.at[donor, "n_cells"] == n_cells
        assert fractions.at[donor, "n_cycling"] == n_cycling
        assert fractions.at[donor, "fraction"] == pytest.approx(n_cycling / n_cells)
        assert fractions.at[donor, "condition"] == condition
        assert fractions.at[donor, "cell_type"] == cell_type


def test_cycling_needs_the_cell_cycle_genes(library):
    adata = _cycling_atlas(library, CYCLING_DONORS)
    assert cell_cycle_phases(adata[:, 10:].copy(), library, min_genes=3, min_score=0.3) is None


def _fractions_table(donors: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"cell_type": ct, "replicate": d, "condition": c, "n_cells": n, "n_cycling": k,
             "fraction": k / n}
            for d, (c, ct, n, k) in donors.items()
        ]
    )  # fmt: skip


def _design(donors: dict) -> pd.DataFrame:
    obs = pd.DataFrame(
        {"donor": [d[:2] for d in donors], "condition": [v[0] for v in donors.values()]}
    )
    return replicate_table(obs.drop_duplicates(), replicate_key="donor")


def test_cycling_difference_is_tested_with_donors_as_the_unit():
    donors = _with_b_cells(CYCLING_DONORS)
    fractions = _fractions_table(donors).assign(replicate=lambda t: t["replicate"].str[:2])
    tests = cycling_tests(fractions, _design(donors), COMPARISON, CONTRAST).set_index("cell_type")
    hsc, b = tests.loc["HSC_MPP"], tests.loc["B_naive"]
    assert hsc["evidence"] == "donor_level" and hsc["n_condition"] == 3
    assert (tests["family"] == "exploratory").all()
    assert hsc["difference"] > 0 and hsc["ci_low"] > 0 and hsc["pvalue"] < 0.05
    assert hsc["mean_fraction_condition"] == pytest.approx(np.mean([18 / 50, 20 / 50, 18 / 40]))
    assert b["pvalue"] > 0.5  # same rate in both conditions
    # one donor a side: no test
    few = {k: v for k, v in donors.items() if k[:2] in {"C1", "A1"}}
    fractions = _fractions_table(few).assign(replicate=lambda t: t["replicate"].str[:2])
    tests = cycling_tests(fractions, _design(few), COMPARISON, CONTRAST)
    assert set(tests["evidence"]) == {"not_testable"}
    assert tests["note"].str.contains("min_replicates_per_group").all()
