"""The simulator: determinism, planted truth visible in the counts, artefacts, demo files.

Tests of the original behaviour run ``realism="simple"`` (the package default); the realistic
simulator (the workflow's default) has its own section below.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
import yaml

from cordatlas.demo.biology import (
    CELL_TYPES,
    SOUP_FRACTION_RANGE,
    STRESS_GENES,
    WEAK_PANEL_MARKERS,
)
from cordatlas.demo.cli import main
from cordatlas.demo.simulate import SimulatedStudy, build_gene_table, simulate_study
from cordatlas.demo.write import demo_rows, write_demo
from cordatlas.errors import UserInputError
from cordatlas.params import Contrast, DemoParams

CORD, ADULT = "cord_blood", "adult"
CONTRAST = Contrast(CORD, ADULT)
BARCODE_RE = re.compile(r"^[ACGT]{16}-1$")
ROOT = Path(__file__).resolve().parents[2]


def _demo(
    seed: int, n_cells_per_sample: int, n_genes: int = 2000, realism: str = "simple"
) -> DemoParams:
    return DemoParams(
        outdir="demo",
        seed=seed,
        n_cells_per_sample=n_cells_per_sample,
        n_genes=n_genes,
        condition_effect=True,
        realism=realism,
        stress="independent",
    )


def _sheet(n_cord: int = 4, n_adult: int = 4) -> pd.DataFrame:
    samples = [f"CB{i}" for i in range(1, n_cord + 1)] + [f"AD{i}" for i in range(1, n_adult + 1)]
    return pd.DataFrame(
        {
            "sample": samples,
            "donor": samples,
            "condition": [CORD] * n_cord + [ADULT] * n_adult,
            "tissue": ["cord_blood"] * n_cord + ["peripheral_blood"] * n_adult,
        }
    )


@pytest.fixture(scope="module")
def study() -> SimulatedStudy:
    return simulate_study(_sheet(), n_cells_per_sample=750, n_genes=2000, seed=11)


@pytest.fixture(scope="module")
def null_study() -> SimulatedStudy:
    return simulate_study(
        _sheet(), n_cells_per_sample=750, n_genes=2000, seed=11, condition_effect=False
    )


def _totals(adata: ad.AnnData) -> np.ndarray:
    return np.asarray(adata.X.sum(axis=1)).ravel()


def _pct_mt(adata: ad.AnnData) -> np.ndarray:
    mito = adata.var_names.str.startswith("MT-")
    return np.asarray(adata.X[:, mito].sum(axis=1)).ravel() / np.maximum(_totals(adata), 1)


def _crude_log2fc(adata: ad.AnnData, cell_type: str, genes: list[str]) -> pd.Series:
    """log2 ratio of mean CP10k, cord vs adult, among healthy singlets of one type."""
    healthy = adata[(adata.obs["artefact"] == "none") & (adata.obs["cell_type"] == cell_type)]
    x = healthy.X.toarray().astype(float)
    cp10k = x / x.sum(axis=1, keepdims=True) * 1e4
    cols = [healthy.var_names.get_loc(g) for g in genes]
    is_cord = (healthy.obs["condition"] == CORD).to_numpy()
    assert is_cord.sum() >= 5 and (~is_cord).sum() >= 5, f"too few {cell_type} cells to compare"
    cord = cp10k[is_cord][:, cols].mean(axis=0) + 0.05
    adult = cp10k[~is_cord][:, cols].mean(axis=0) + 0.05
    return pd.Series(np.log2(cord / adult), index=genes)


# ---------------------------------------------------------------------------------------------
# structure and determinism
# ---------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_counts_and_truth():
    first = simulate_study(_sheet(2, 2), n_cells_per_sample=200, n_genes=600, seed=5)
    second = simulate_study(_sheet(2, 2), n_cells_per_sample=200, n_genes=600, seed=5)
    assert (first.adata.X != second.adata.X).nnz == 0
    pd.testing.assert_frame_equal(first.truth_cells, second.truth_cells)
    pd.testing.assert_frame_equal(first.truth_de, second.truth_de)
    pd.testing.assert_frame_equal(first.truth_composition, second.truth_composition)
    assert list(first.adata.obs_names) == list(second.adata.obs_names)


def test_threads_do_not_change_the_result():
    # > 2 blocks of cells, so the threaded path really runs in parallel
    one = simulate_study(_sheet(2, 2), n_cells_per_sample=1500, n_genes=600, seed=2, threads=1)
    two = simulate_study(_sheet(2, 2), n_cells_per_sample=1500, n_genes=600, seed=2, threads=2)
    assert (one.adata.X != two.adata.X).nnz == 0


def test_seed_changes_the_data():
    first = simulate_study(_sheet(2, 2), n_cells_per_sample=200, n_genes=600, seed=5)
    other = simulate_study(_sheet(2, 2), n_cells_per_sample=200, n_genes=600, seed=6)
    assert (first.adata.X != other.adata.X).nnz > 0.5 * first.adata.X.nnz
    assert not first.truth_cells["barcode"].equals(other.truth_cells["barcode"])
    assert not first.truth_de["gene"].equals(other.truth_de["gene"])


def test_counts_are_nonnegative_integers_in_csr(study):
    x = study.adata.X
    assert sp.issparse(x) and x.format == "csr"
    assert np.issubdtype(x.dtype, np.integer)
    assert x.data.min() >= 1  # no stored zeros
    assert study.adata.shape == (8 * 750, 2000)
    assert x.has_sorted_indices


def test_gene_universe(study):
    genes = build_gene_table(n_genes=2000)
    assert len(genes) == 2000 and genes["gene"].is_unique and genes["gene_ids"].is_unique
    assert genes["gene_ids"].str.fullmatch(r"ENSG9\d{10}").all()
    assert list(study.adata.var_names) == genes["gene"].tolist()
    assert list(study.adata.var["gene_ids"]) == genes["gene_ids"].tolist()
    names = set(genes["gene"])
    assert sum(n.startswith("MT-") for n in names) == 13
    assert sum(re.match(r"^RP[SL]\d", n) is not None for n in names) >= 60
    required = {
        "ACTB", "B2M", "MALAT1", "TMSB4X", "HBA1", "HBA2", "HBB", "HBD", "HBG1", "HBG2", "HBM",
        "HBZ", "LIN28B", "HMGA2", "IGF2BP3", "IGF2BP1", "HLF", "AVP", "CRHBP", "CD34", "PROM1",
        "MECOM", "NRIP1", "MLLT3", "SPINK2", "BCL11A", "FOXP3", "IL2RA", "CTLA4", "IKZF2",
        "TNFRSF18", "CCR4", "IL10", "TGFB1", "IDO1", "CD274", "LGALS1", "LGALS9", "HLA-G",
        "ENTPD1", "NT5E", "GZMA", "GZMB", "GZMH", "PRF1", "GNLY", "NKG7", "IFNG", "KIR2DL1",
        "KIR3DL1", "KLRC1", "S100A8", "S100A9", "CXCL8", "AREG", "VEGFA", "HGF", "IGF1",
        "FGF2", "ISG15", "IFI6", "IFIT1", "IFIT3", "MX1", "OAS1", "IFI44L", "JUN", "JUNB",
        "FOS", "FOSB", "NFKBIA", "TNFAIP3", "HSPA1A", "HSPA1B", "DUSP1", "IER2", "EGR1",
        "ZFP36", "MCM5", "PCNA", "MKI67", "TOP2A", "CD14", "LYZ", "FCGR3A", "MS4A1", "CD3E",
        "CD8A", "CD4", "KLRD1", "PF4", "PPBP", "LILRA4", "FCER1A", "MPO", "GATA1",
    }  # fmt: skip
    assert required <= names
    assert genes.loc[genes["category"] == "filler", "gene"].str.fullmatch(r"SIMG\d{5}").all()
    with pytest.raises(UserInputError, match="n_genes"):
        build_gene_table(n_genes=100)


def test_obs_and_truth_cells_agree(study):
    obs = study.adata.obs
    truth = study.truth_cells
    for column in ("sample", "donor", "condition", "barcode", "cell_type", "artefact"):
        assert list(obs[column].astype(str)) == list(truth[column].astype(str))
    assert list(obs["tissue"].astype(str)[:1]) == ["cord_blood"]  # sheet columns carried
    assert set(truth["artefact"]) == {"none", "damaged", "low_count", "doublet"}
    assert set(truth.loc[truth["artefact"] == "none", "cell_type"]) == set(CELL_TYPES)
    assert study.adata.obs_names.is_unique


def test_barcodes_are_realistic_and_unique_per_sample(study):
    truth = study.truth_cells
    assert truth["barcode"].str.fullmatch(BARCODE_RE).all()
    assert not truth.duplicated(["sample", "barcode"]).any()


# ---------------------------------------------------------------------------------------------
# composition
# ---------------------------------------------------------------------------------------------
def _observed_proportions(study: SimulatedStudy) -> pd.DataFrame:
    healthy = study.adata.obs[study.adata.obs["artefact"] == "none"]
    table = pd.crosstab(healthy["donor"].astype(str), healthy["cell_type"].astype(str))
    return table.reindex(columns=list(CELL_TYPES), fill_value=0).div(table.sum(axis=1), axis=0)


def test_expected_cell_types_present_in_every_donor(study):
    proportions = _observed_proportions(study)
    expected = study.truth_condition_composition
    donor_condition = study.truth_cells.drop_duplicates("donor").set_index("donor")["condition"]
    for donor, condition in donor_condition.items():
        common = expected[
            (expected["condition"] == condition) & (expected["expected_proportion"] >= 0.025)
        ]["cell_type"]
        assert len(common) >= 9
        missing = [t for t in common if proportions.loc[donor, t] == 0]
        assert missing == [], f"{donor} lacks {missing}"


def test_composition_table_matches_the_cells(study):
    proportions = _observed_proportions(study)
    table = study.truth_composition
    for row in table.itertuples():
        assert row.proportion == pytest.approx(proportions.loc[row.donor, row.cell_type])
    sums = table.groupby("donor")["proportion"].sum()
    np.testing.assert_allclose(sums, 1.0)


def test_planted_composition_shift(study):
    proportions = _observed_proportions(study)
    is_cord = proportions.index.str.startswith("CB")
    observed = np.log2(proportions[is_cord].mean() / proportions[~is_cord].mean())
    expected = study.truth_condition_composition.pivot(
        index="cell_type", columns="condition", values="expected_proportion"
    )
    planted = np.log2(expected[CORD] / expected[ADULT])
    higher_in_cord = [
        "HSC_MPP",
        "myeloid_progenitor",
        "erythroid_progenitor",
        "erythroid",
        "CD4_naive",
        "CD8_naive",
    ]
    higher_in_adult = ["CD4_memory", "CD8_effector", "NK_CD56dim", "CD16_monocyte"]
    assert (planted[higher_in_cord] > 0.5).all() and (planted[higher_in_adult] < -0.5).all()
    shifted = higher_in_cord + higher_in_adult
    # with 4 donors per group and Dirichlet donor noise a rare type's shift can shrink or, once
    # in a while, flip; the shifts as a whole must come back in direction and size
    same_direction = np.sign(observed[shifted]) == np.sign(planted[shifted])
    assert same_direction.sum() >= len(shifted) - 1, observed[shifted]
    recovered = observed[shifted] / planted[shifted]
    assert 0.5 < recovered.mean() < 1.6, recovered


def test_donor_proportions_vary_around_the_condition_mean(study):
    proportions = _observed_proportions(study)
    cord = proportions[proportions.index.str.startswith("CB")]
    # donors differ (Dirichlet), but not wildly: CD4_naive sd across donors in a sane range
    sd = cord["CD4_naive"].std()
    assert 0.005 < sd < 0.1


# ---------------------------------------------------------------------------------------------
# artefacts
# ---------------------------------------------------------------------------------------------
def test_artefact_rates_as_requested():
    rates = {"damaged": 0.10, "low_count": 0.03, "doublet": 0.08}
    sim = simulate_study(
        _sheet(2, 2),
        n_cells_per_sample=400,
        n_genes=600,
        seed=1,
        damaged_rate=rates["damaged"],
        low_count_rate=rates["low_count"],
        doublet_rate=rates["doublet"],
    )
    observed = pd.crosstab(
        sim.truth_cells["sample"], sim.truth_cells["artefact"], normalize="index"
    )
    for artefact, rate in rates.items():
        np.testing.assert_allclose(observed[artefact], rate, atol=1 / 400)


def test_healthy_cells_have_low_mito_and_damaged_cells_high(study):
    pct = _pct_mt(study.adata)
    artefact = study.truth_cells["artefact"].to_numpy()
    healthy, damaged = pct[artefact == "none"], pct[artefact == "damaged"]
    assert 0.02 <= np.median(healthy) <= 0.08
    assert np.quantile(healthy, 0.99) < 0.12
    assert damaged.min() > 0.15
    assert 0.3 < np.median(damaged) < 0.7
    totals = _totals(study.adata)
    # damaged cells lost RNA: fewer counts than healthy cells, typically
    assert np.median(totals[artefact == "damaged"]) < np.median(totals[artefact == "none"])


def test_low_count_barcodes_are_low(study):
    totals = _totals(study.adata)
    artefact = study.truth_cells["artefact"].to_numpy()
    low = totals[artefact == "low_count"]
    assert low.max() <= 400 and 30 <= np.median(low) <= 300
    assert np.quantile(totals[artefact == "none"], 0.01) > 500
    assert set(study.truth_cells.loc[artefact == "low_count", "cell_type"]) == {"ambient"}


def test_doublets_sum_two_mostly_different_cells(study):
    truth = study.truth_cells
    doublet = truth["artefact"] == "doublet"
    assert (truth.loc[doublet, "cell_type"] == "doublet").all()
    assert (truth.loc[~doublet, "doublet_types"] == "").all()
    pairs = truth.loc[doublet, "doublet_types"].str.split("+")
    assert pairs.map(len).eq(2).all()
    assert pairs.map(lambda p: set(p) <= set(CELL_TYPES)).all()
    heterotypic = pairs.map(lambda p: p[0] != p[1]).mean()
    assert heterotypic > 0.75
    totals = _totals(study.adata)
    assert np.median(totals[doublet.to_numpy()]) > 1.5 * np.median(totals[~doublet.to_numpy()])


# ---------------------------------------------------------------------------------------------
# planted expression differences
# ---------------------------------------------------------------------------------------------
def test_planted_programmes_visible_in_crude_means(study):
    ery = _crude_log2fc(study.adata, "erythroid", ["HBG1", "HBG2", "BCL11A"])
    assert ery["HBG1"] > 1.5 and ery["HBG2"] > 1.5
    assert ery["BCL11A"] < -0.5
    nk = _crude_log2fc(study.adata, "NK_CD56dim", ["GZMB", "PRF1", "GNLY", "NKG7"])
    assert (nk < -0.8).all(), nk
    cd8 = _crude_log2fc(study.adata, "CD8_effector", ["GZMB", "PRF1", "GNLY", "NKG7"])
    assert (cd8 < -0.8).all(), cd8
    hsc = _crude_log2fc(study.adata, "HSC_MPP", ["LIN28B", "HMGA2", "IGF2BP3"])
    assert (hsc > 1.0).all(), hsc


def test_random_de_genes_recovered_and_null_genes_flat(study):
    truth = study.truth_de
    for cell_type in ("CD14_monocyte", "CD4_naive", "B_naive"):
        planted = truth[(truth["cell_type"] == cell_type) & (truth["programme"] == "random")]
        assert len(planted) == 15
        assert (planted["log2FC"].abs() >= 1).all() and (planted["log2FC"] > 0).any()
        assert (planted["log2FC"] < 0).any()
        observed = _crude_log2fc(study.adata, cell_type, planted["gene"].tolist())
        assert np.corrcoef(observed, planted["log2FC"])[0, 1] > 0.8
        assert (np.sign(observed) == np.sign(planted["log2FC"].to_numpy())).mean() >= 0.9
        # null genes: expressed fillers not planted in this type
        genes = study.adata.var
        fillers = genes.index[genes["category"] == "filler"]
        null = [
            g for g in fillers if g not in set(truth.loc[truth["cell_type"] == cell_type, "gene"])
        ]
        null_fc = _crude_log2fc(study.adata, cell_type, null[:300])
        assert np.median(np.abs(null_fc)) < 0.35


def test_truth_de_table(study):
    truth = study.truth_de
    assert not truth.duplicated(["cell_type", "gene"]).any()
    assert set(truth["cell_type"]) == set(CELL_TYPES)
    assert truth["gene"].isin(study.adata.var_names).all()
    assert {"fetal_programme", "fetal_haemoglobin", "cytotoxicity", "random"} == set(
        truth["programme"]
    )
    random_genes = truth.loc[truth["programme"] == "random", "gene"]
    assert random_genes.str.startswith("SIMG").all()
    assert (truth["reference_cp10k"] > 0).all()


def test_null_simulation_plants_nothing(null_study):
    assert null_study.truth_de.empty
    expected = null_study.truth_condition_composition.pivot(
        index="cell_type", columns="condition", values="expected_proportion"
    )
    np.testing.assert_allclose(expected[CORD], expected[ADULT])
    ery = _crude_log2fc(null_study.adata, "erythroid", ["HBG1", "HBG2"])
    assert (ery.abs() < 0.8).all(), ery  # planted: +3
    nk = _crude_log2fc(null_study.adata, "NK_CD56dim", ["GZMB", "PRF1", "GNLY", "NKG7"])
    assert (nk.abs() < 0.5).all(), nk


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------
def test_sample_sheet_errors_are_user_errors():
    sheet = _sheet(1, 1)
    with pytest.raises(UserInputError, match="donor"):
        simulate_study(sheet.drop(columns="donor"), n_genes=600, n_cells_per_sample=100)
    bad = sheet.copy()
    bad.loc[0, "condition"] = "fetal_liver"
    with pytest.raises(UserInputError, match="fetal_liver"):
        simulate_study(bad, n_genes=600, n_cells_per_sample=100)
    twice = sheet.copy()
    twice.loc[1, "donor"] = twice.loc[0, "donor"]
    with pytest.raises(UserInputError, match="more than one condition"):
        simulate_study(twice, n_genes=600, n_cells_per_sample=100)
    with pytest.raises(UserInputError, match="healthy"):
        simulate_study(
            sheet, n_genes=600, n_cells_per_sample=100, damaged_rate=0.5, doublet_rate=0.5
        )


def test_sample_as_index_and_shared_donor_accepted():
    sheet = _sheet(2, 1)
    sheet.loc[1, "donor"] = "CB1"  # two samples of one donor (technical replicate)
    sim = simulate_study(sheet.set_index("sample"), n_genes=600, n_cells_per_sample=100)
    assert set(sim.truth_composition["donor"]) == {"CB1", "AD1"}
    assert sim.truth_cells["sample"].nunique() == 3


# ---------------------------------------------------------------------------------------------
# simple = the original simulator; realistic: what it plants, visible in counts and truth
# ---------------------------------------------------------------------------------------------
def _fingerprint(sim: SimulatedStudy) -> str:
    x = sim.adata.X
    digest = hashlib.sha256()
    for part in (x.indptr.astype(np.int64), x.indices.astype(np.int32), x.data.astype(np.int32)):
        digest.update(part.tobytes())
    return digest.hexdigest()


def test_simple_reproduces_the_original_simulator():
    """Counts and truth of the simulator before `realism` existed (commit 1d703b4), same seed.

    Hashes recorded with numpy 2.4.6. NumPy may change a Generator method's stream in a
    feature release (NEP 19): if this fails after a numpy upgrade and nothing else, re-record
    them from the commit above with that numpy.
    """
    sim = simulate_study(
        _sheet(2, 2), n_cells_per_sample=200, n_genes=600, seed=5, realism="simple"
    )
    assert _fingerprint(sim) == "a60a3f7c927275649ed2f3ce4e2e7b15f491db8f69aae0dcd79a64d65a356c2b"
    old_columns = ["sample", "donor", "condition", "barcode", "cell_type", "artefact"]
    old_columns += ["doublet_types", "phase"]
    cells = sim.truth_cells[old_columns].to_csv(sep="\t", index=False).encode()
    assert hashlib.sha256(cells).hexdigest() == (
        "51cb1e683b25412851c39f2291a6a9e4e9ecd588d2b4ce4498928960e3d8f07f"
    )
    de = sim.truth_de.iloc[:, :5].to_csv(sep="\t", index=False, float_format="%.6g").encode()
    assert hashlib.sha256(de).hexdigest() == (
        "d346fe36c75c43c42b09bf8b704bc2d046c5e5ab49d6de976f60adccafbaffa1"
    )
    # nothing realistic is planted
    assert (
        sim.truth_cells.loc[sim.truth_cells["artefact"] != "low_count", "ambient_fraction"] == 0
    ).all()
    assert sim.truth_cells["memory_score"].isna().all()
    assert (sim.truth_cells["stress_log2fc"] == 0).all()
    assert "no" not in set(sim.truth_de["agrees_with_literature"])


@pytest.fixture(scope="module")
def real_study() -> SimulatedStudy:
    return simulate_study(
        _sheet(), n_cells_per_sample=750, n_genes=2000, seed=11, realism="realistic"
    )


def test_realistic_is_deterministic_for_a_seed():
    kwargs = {"n_cells_per_sample": 200, "n_genes": 600, "realism": "realistic"}
    first = simulate_study(_sheet(2, 2), seed=5, **kwargs)
    second = simulate_study(_sheet(2, 2), seed=5, **kwargs)
    other = simulate_study(_sheet(2, 2), seed=6, **kwargs)
    assert (first.adata.X != second.adata.X).nnz == 0
    for name in ("truth_cells", "truth_de", "truth_genes", "truth_samples"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert (first.adata.X != other.adata.X).nnz > 0.5 * first.adata.X.nnz
    assert not first.truth_samples.equals(other.truth_samples)
    simple = simulate_study(_sheet(2, 2), seed=5, n_cells_per_sample=200, n_genes=600)
    assert _fingerprint(simple) != _fingerprint(first)


def _cp10k(adata: ad.AnnData, mask: np.ndarray, genes: list[str]) -> np.ndarray:
    """CP10k of `genes` (cells x genes) in the cells of `mask`."""
    x = adata.X[np.flatnonzero(mask)]
    totals = np.asarray(x.sum(axis=1)).ravel()
    cols = [adata.var_names.get_loc(g) for g in genes]
    return x[:, cols].toarray() / totals[:, None] * 1e4


def _healthy(sim: SimulatedStudy, cell_types: list[str]) -> np.ndarray:
    truth = sim.truth_cells
    return ((truth["artefact"] == "none") & truth["cell_type"].isin(cell_types)).to_numpy()


def test_soup_reaches_cells_that_do_not_express_the_gene(study, real_study):
    t_cells = ["CD4_naive", "CD8_naive", "CD4_memory"]
    # LYZ is a monocyte transcript: T cells hold it only through the soup
    lyz_simple = _cp10k(study.adata, _healthy(study, t_cells), ["LYZ"]).mean()
    lyz_real = _cp10k(real_study.adata, _healthy(real_study, t_cells), ["LYZ"]).mean()
    assert lyz_real > 5 * lyz_simple, (lyz_real, lyz_simple)
    truth = real_study.truth_cells
    cells = truth[truth["artefact"].isin(["none", "damaged", "doublet"])]
    assert (cells["ambient_fraction"] > 0).all() and (cells["ambient_fraction"] <= 0.5).all()
    assert (truth.loc[truth["artefact"] == "low_count", "ambient_fraction"] == 1).all()
    samples = real_study.truth_samples.set_index("sample")
    assert samples["ambient_fraction"].between(*SOUP_FRACTION_RANGE).all()
    # lysed red cells: more globin in the soup of samples with more erythroid cells, and so
    # in their T cells
    erythroid = (
        real_study.truth_composition.query("cell_type in ['erythroid', 'erythroid_progenitor']")
        .groupby("donor")["donor_proportion"]
        .sum()
    )
    hb_share = samples.set_index("donor")["soup_haemoglobin_share"]
    assert np.corrcoef(erythroid[hb_share.index], hb_share)[0, 1] > 0.9
    hb_genes = ["HBB", "HBA1", "HBA2"]
    per_sample = {
        sample: _cp10k(
            real_study.adata,
            _healthy(real_study, t_cells) & (truth["sample"] == sample).to_numpy(),
            hb_genes,
        )
        .sum(axis=1)
        .mean()
        for sample in samples.index
    }
    expected = samples["ambient_fraction"] * samples["soup_haemoglobin_share"]
    observed = pd.Series(per_sample)[expected.index]
    assert observed.corr(expected, method="spearman") > 0.7, (observed, expected)


def test_t_cells_lie_on_a_naive_to_memory_continuum(real_study):
    truth = real_study.truth_cells
    singlets = truth["artefact"].isin(["none", "damaged"])
    for naive, memory in (("CD4_naive", "CD4_memory"), ("CD8_naive", "CD8_effector")):
        score_naive = truth.loc[singlets & (truth["cell_type"] == naive), "memory_score"]
        score_memory = truth.loc[singlets & (truth["cell_type"] == memory), "memory_score"]
        assert score_naive.notna().all() and score_memory.notna().all()
        assert (score_naive < 0.5).all() and (score_memory > 0.5).all()  # label = side
        both = pd.concat([score_naive, score_memory])
        assert both.between(0.3, 0.7).mean() > 0.15  # intermediate cells, not two blobs
    assert truth.loc[truth["cell_type"].isin(["Treg", "B_naive"]), "memory_score"].isna().all()
    # expression follows the position: naive CCR7 falls and memory S100A4 rises along it
    cd4 = (singlets & truth["cell_type"].isin(["CD4_naive", "CD4_memory"])).to_numpy()
    cd4 &= (truth["artefact"] == "none").to_numpy()
    expr = _cp10k(real_study.adata, cd4, ["CCR7", "S100A4"])
    position = truth.loc[cd4, "memory_score"].to_numpy()
    bins = [(0.0, 0.15), (0.3, 0.5), (0.5, 0.7), (0.85, 1.0)]
    s100a4 = [expr[(position >= lo) & (position < hi), 1].mean() for lo, hi in bins]
    ccr7 = [expr[(position >= lo) & (position < hi), 0].mean() for lo, hi in bins]
    # geometric interpolation: each step along the axis multiplies the memory transcript
    assert all(b > 2 * a for a, b in zip(s100a4, s100a4[1:], strict=False)), s100a4
    assert ccr7 == sorted(ccr7, reverse=True), ccr7


def test_donor_composition_spreads_as_between_people(study, real_study):
    def spread(sim: SimulatedStudy) -> pd.Series:
        drawn = sim.truth_composition
        return drawn.groupby(["condition", "cell_type"])["donor_proportion"].std()

    ratio = spread(real_study) / spread(study)
    # Dirichlet 30 instead of 200: sd sqrt(201 / 31) = 2.5 times larger, on average
    assert 1.7 < ratio.median() < 3.6, ratio.describe()


def test_donor_effects_are_larger_and_cell_type_specific(study, real_study):
    def donor_effects(sim: SimulatedStudy, cell_type: str, genes: list[str]) -> pd.DataFrame:
        truth = sim.truth_cells
        cord = (truth["condition"] == CORD).to_numpy()
        mask = _healthy(sim, [cell_type]) & cord
        x = sim.adata.X[np.flatnonzero(mask)][:, [sim.adata.var_names.get_loc(g) for g in genes]]
        pseudobulk = (
            pd.DataFrame(x.toarray(), index=truth.loc[mask, "donor"]).groupby(level=0).sum()
        )
        share = pseudobulk.div(pseudobulk.sum(axis=1), axis=0)
        return np.log(share / share.mean())

    def effects(sim: SimulatedStudy) -> tuple[float, float]:
        genes = sim.adata.var
        fillers = genes.index[genes["category"] == "filler"]
        planted = set(sim.truth_de["gene"])
        healthy = _healthy(sim, ["CD14_monocyte", "CD4_naive"])
        means = np.asarray(sim.adata.X[np.flatnonzero(healthy)].mean(axis=0)).ravel()
        level = pd.Series(means, index=sim.adata.var_names)[
            [g for g in fillers if g not in planted]
        ]
        top = level.sort_values(ascending=False).index[:150].tolist()
        mono = donor_effects(sim, "CD14_monocyte", top)
        tcell = donor_effects(sim, "CD4_naive", top)
        corr = np.corrcoef(mono.to_numpy().ravel(), tcell.to_numpy().ravel())[0, 1]
        return corr, float(np.std(mono.to_numpy()))

    corr_simple, sd_simple = effects(study)
    corr_real, sd_real = effects(real_study)
    assert corr_real < corr_simple - 0.2, (corr_real, corr_simple)
    assert sd_real > 1.5 * sd_simple, (sd_real, sd_simple)


def test_doublets_mix_unequally_and_pair_by_type_frequency(study, real_study):
    truth = real_study.truth_cells
    doublets = truth[truth["artefact"] == "doublet"]
    mix = doublets["doublet_mix"]
    assert mix.between(0, 1).all()
    lopsided = ((mix < 0.25) | (mix > 0.75)).mean()
    simple_mix = study.truth_cells.loc[study.truth_cells["artefact"] == "doublet", "doublet_mix"]
    assert lopsided > 0.15 and lopsided > 2 * ((simple_mix < 0.25) | (simple_mix > 0.75)).mean()
    assert truth.loc[truth["artefact"] != "doublet", "doublet_mix"].isna().all()
    # homotypic share = sum of squared type frequencies, sample by sample (not a fixed 10 %)
    props = real_study.truth_composition.pivot(
        index="donor", columns="cell_type", values="donor_proportion"
    )
    expected = (props**2).sum(axis=1)[doublets["donor"]].mean()
    pairs = doublets["doublet_types"].str.split("+")
    homotypic = pairs.map(lambda p: p[0] == p[1]).mean()
    assert abs(homotypic - expected) < 0.06, (homotypic, expected)


def test_damaged_cells_spread_across_the_thresholds(real_study):
    pct = _pct_mt(real_study.adata)
    truth = real_study.truth_cells
    damaged = (truth["artefact"] == "damaged").to_numpy()
    assert pct[damaged].min() < 0.12 and pct[damaged].max() > 0.3
    assert 0.2 < (pct[damaged] < 0.2).mean() < 0.8  # some below a 20 % cut, some above
    planted = truth.loc[damaged, "damage_mito_share"].to_numpy()
    # measured below planted by the soup (large in cells that lost RNA) and count noise
    assert np.corrcoef(planted, pct[damaged])[0, 1] > 0.75
    assert truth.loc[~damaged, "damage_mito_share"].isna().all()


def _stress_score(sim: SimulatedStudy) -> pd.Series:
    """Per donor: mean CP10k of the stress genes in healthy T cells and monocytes."""
    truth = sim.truth_cells
    mask = _healthy(sim, ["CD4_naive", "CD14_monocyte", "B_naive"])
    total = _cp10k(sim.adata, mask, list(STRESS_GENES)).sum(axis=1)
    return pd.Series(total, index=truth.loc[mask, "donor"]).groupby(level=0).mean()


def test_stress_is_planted_in_some_donors_of_each_condition(real_study):
    samples = real_study.truth_samples.set_index("donor")
    assert samples.groupby("condition")["stressed"].sum().to_dict() == {ADULT: 2, CORD: 2}
    assert (samples.loc[samples["stressed"], "stress_log2fc"] >= 1).all()
    score = _stress_score(real_study)
    stressed, calm = score[samples["stressed"]], score[~samples["stressed"]]
    assert stressed.min() > 1.5 * calm.max(), score
    truth = real_study.truth_cells
    cells = truth[truth["artefact"] == "none"]
    by_donor = cells.groupby("donor")["stress_log2fc"].min()
    assert (by_donor[~samples["stressed"]] == 0).all() and (by_donor[samples["stressed"]] > 0).all()


def test_stress_can_be_aliased_with_condition():
    sim = simulate_study(
        _sheet(3, 3), n_cells_per_sample=300, n_genes=2000, seed=4, realism="realistic",
        stress="with_condition",
    )  # fmt: skip
    samples = sim.truth_samples.set_index("donor")
    assert (samples["stressed"] == (samples["condition"] == CORD)).all()
    score = _stress_score(sim)
    assert score[samples["condition"] == CORD].min() > score[samples["condition"] == ADULT].max()


def test_simulated_markers_differ_from_the_annotation_panel(study, real_study):
    panel = yaml.safe_load((ROOT / "config/marker_panel.yaml").read_text())["cell_types"]
    for cell_type, genes in WEAK_PANEL_MARKERS.items():
        assert set(genes) <= set(panel[cell_type]["markers"]), cell_type
        weak_real = _cp10k(real_study.adata, _healthy(real_study, [cell_type]), list(genes))
        weak_simple = _cp10k(study.adata, _healthy(study, [cell_type]), list(genes))
        assert (weak_real.mean(axis=0) < 1.5).all(), (cell_type, weak_real.mean(axis=0))
        assert (weak_simple.mean(axis=0) > 3).all(), (cell_type, weak_simple.mean(axis=0))
    genes = real_study.truth_genes.set_index("gene")
    assert genes.loc["CD4", "weak_in"] == "CD4_naive;CD4_memory;Treg"
    panel_genes = {g for entry in panel.values() for g in entry["markers"]}
    for cell_type in ("CD14_monocyte", "NK_CD56dim", "B_naive", "erythroid"):
        unnamed = [
            g for g, marks in genes["marker_of"].items()
            if g.startswith("SIMG") and cell_type in marks.split(";")
        ]  # fmt: skip
        assert len(unnamed) == 4 and not set(unnamed) & panel_genes
        own = _cp10k(real_study.adata, _healthy(real_study, [cell_type]), unnamed).mean(axis=0)
        others = [t for t in CELL_TYPES if t != cell_type]
        rest = _cp10k(real_study.adata, _healthy(real_study, others), unnamed).mean(axis=0)
        assert (own > 5 * rest).all() and (own > 5).all(), (cell_type, own, rest)
    assert study.truth_genes["weak_in"].eq("").all()


def test_one_planted_effect_is_opposite_to_the_literature(real_study):
    library = yaml.safe_load((ROOT / "config/signatures.yaml").read_text())["gene_sets"]
    truth = real_study.truth_de
    judged = truth[truth["literature_set"] != ""]
    for gene_set, direction in (
        judged.groupby("literature_set")["literature_direction"].first().items()
    ):
        assert library[gene_set]["expected_direction"] == direction, gene_set
        genes = judged.loc[judged["literature_set"] == gene_set, "gene"]
        assert set(genes) <= set(library[gene_set]["genes"]) | {"BCL11A"}
    opposite = truth[truth["agrees_with_literature"] == "no"]
    assert set(zip(opposite["cell_type"], opposite["gene"], strict=True)) == {
        ("CD14_monocyte", "S100A8"),
        ("CD14_monocyte", "S100A9"),
    }
    assert (opposite["literature_direction"] == "up").all() and (opposite["log2FC"] < 0).all()
    observed = _crude_log2fc(real_study.adata, "CD14_monocyte", ["S100A8", "S100A9"])
    assert (observed < -0.5).all(), observed
    assert set(truth.loc[truth["programme"] == "random", "agrees_with_literature"]) == {""}


def test_realism_and_stress_values_are_checked():
    with pytest.raises(UserInputError, match="realism"):
        simulate_study(_sheet(1, 1), n_genes=600, n_cells_per_sample=60, realism="fancy")
    with pytest.raises(UserInputError, match="realistic simulator needs"):
        simulate_study(_sheet(1, 1), n_genes=446, n_cells_per_sample=60, realism="realistic")
    with pytest.raises(UserInputError, match="stress"):
        simulate_study(
            _sheet(1, 1), n_genes=600, n_cells_per_sample=60, realism="realistic", stress="always"
        )


def test_demo_rows_are_those_under_the_demo_folder():
    sheet = _sheet(2, 1)
    sheet["path"] = ["resources/demo/a.h5ad", "data/real.h5", pd.NA]
    assert demo_rows(sheet, "resources/demo")["sample"].tolist() == ["CB1"]
    assert demo_rows(sheet.drop(columns="path"), "resources/demo").empty


# ---------------------------------------------------------------------------------------------
# write_demo: every format, a pooled file, the mixed-species file
# ---------------------------------------------------------------------------------------------
def _demo_sheet() -> pd.DataFrame:
    sheet = _sheet()
    sheet["format"] = [
        "h5ad",
        "10x_h5",
        "10x_mtx",
        "delimited",
        "loom",
        "10x_mtx",
        "10x_h5",
        "10x_h5",
    ]
    sheet["path"] = [
        "demo/CB1.h5ad",
        "demo/CB2.h5",
        "demo/CB3_mtx",
        "demo/CB4_RNA_umi.csv.gz",
        "demo/AD1.loom",
        "demo/AD2_mtx",
        "demo/adult_pooled.h5",
        "demo/adult_pooled.h5",
    ]
    sheet["barcode_pattern"] = [""] * 6 + ["^AD3-", "^AD4-"]
    return sheet


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, SimulatedStudy]:
    root = tmp_path_factory.mktemp("demo")
    sim = write_demo(
        _demo_sheet(),
        _demo(3, 200, realism="realistic"),
        CONTRAST,
        base_dir=root,
        truth_dir=root / "truth",
    )
    return root, sim


def _read(root: Path, sheet_row: pd.Series) -> ad.AnnData:
    path = root / sheet_row["path"]
    fmt = sheet_row["format"]
    if fmt == "10x_h5":
        with h5py.File(path) as f:
            genome = None if "matrix" in f else next(iter(f))
        return sc.read_10x_h5(path, genome=genome)
    if fmt == "10x_mtx":
        return sc.read_10x_mtx(path)
    if fmt == "h5ad":
        return ad.read_h5ad(path)
    if fmt == "loom":
        return ad.io.read_loom(path, sparse=True, obs_names="obs_names", var_names="var_names")
    if str(path).endswith(".csv.gz"):
        return sc.read_csv(path).T
    return ad.io.read_text(path, delimiter="\t", first_column_names=True)


def test_write_demo_writes_every_format(demo):
    root, sim = demo
    sheet = _demo_sheet()
    truth = sim.truth_cells
    # layouts: cord in Cell Ranger v3, adult in v2
    with h5py.File(root / "demo/CB2.h5") as f:
        assert "matrix" in f
    with h5py.File(root / "demo/adult_pooled.h5") as f:
        assert list(f) == ["GRCh38"]
    assert (root / "demo/CB3_mtx/features.tsv.gz").is_file()
    assert (root / "demo/AD2_mtx/genes.tsv").is_file()
    assert "tissue" in sim.adata.obs and "path" not in sim.adata.obs  # metadata, not files
    for _, row in sheet.iterrows():
        if row["sample"] == "CB4":
            continue  # mixed species, checked below
        read = _read(root, row)
        in_file = truth[truth["sample"].isin(sheet.loc[sheet["path"] == row["path"], "sample"])]
        assert list(read.obs_names) == in_file["barcode"].tolist(), row["sample"]
        assert list(read.var_names) == list(sim.adata.var_names)
        expected = sim.adata[in_file.index.to_numpy()].X.toarray()
        np.testing.assert_array_equal(read.X.toarray() if sp.issparse(read.X) else read.X, expected)
        if row["format"] != "delimited":
            assert list(read.var["gene_ids"]) == list(sim.adata.var["gene_ids"])


def test_pooled_file_patterns_select_each_sample(demo):
    root, sim = demo
    read = sc.read_10x_h5(root / "demo/adult_pooled.h5", genome="GRCh38")
    assert read.n_obs == 400
    for sample in ("AD3", "AD4"):
        selected = [b for b in read.obs_names if re.search(f"^{sample}-", b)]
        expected = sim.truth_cells.loc[sim.truth_cells["sample"] == sample, "barcode"]
        assert selected == expected.tolist()
        assert all(BARCODE_RE.match(b.removeprefix(f"{sample}-")) for b in selected)
    unpooled = sim.truth_cells.loc[sim.truth_cells["sample"] == "CB1", "barcode"]
    assert unpooled.str.fullmatch(BARCODE_RE).all()


def test_mixed_species_file(demo):
    root, sim = demo
    read = sc.read_csv(root / "demo/CB4_RNA_umi.csv.gz").T  # GEO style: genes x cells
    human = read.var_names.str.startswith("HUMAN_")
    mouse = read.var_names.str.startswith("MOUSE_")
    assert (human | mouse).all()
    assert human.sum() == sim.adata.n_vars and mouse.sum() == 200
    assert "MOUSE_Actb" in read.var_names and "HUMAN_MT-CO1" in read.var_names
    truth = sim.truth_cells[sim.truth_cells["sample"] == "CB4"]
    assert list(read.obs_names) == truth["barcode"].tolist()
    is_mouse = (truth["artefact"] == "other_species").to_numpy()
    assert (truth.loc[is_mouse, "cell_type"] == "mouse").all()
    assert 0.03 <= is_mouse.sum() / (~is_mouse).sum() <= 0.07
    x = read.X.astype(float)
    mouse_share = x[:, mouse].sum(axis=1) / x.sum(axis=1)
    assert mouse_share[is_mouse].min() > 0.9
    assert mouse_share[~is_mouse].max() < 0.05
    # the human part of human cells equals the simulated counts
    expected = sim.adata[truth.index[~is_mouse].to_numpy()].X.toarray()
    np.testing.assert_array_equal(x[~is_mouse][:, human], expected)
    # mouse cells are in the returned study too (with their human ambient counts)
    assert (sim.adata.obs["artefact"] == "other_species").sum() == is_mouse.sum()


def test_truth_tables_written(demo):
    root, sim = demo
    names = sorted(p.name for p in (root / "truth").iterdir())
    assert names == [
        "truth_cells.tsv",
        "truth_composition.tsv",
        "truth_condition_composition.tsv",
        "truth_de.tsv",
        "truth_genes.tsv",
        "truth_samples.tsv",
    ]
    cells = pd.read_csv(root / "truth/truth_cells.tsv", sep="\t", keep_default_na=False)
    assert cells["barcode"].tolist() == sim.truth_cells["barcode"].tolist()
    assert set(cells["artefact"]) == {"none", "damaged", "low_count", "doublet", "other_species"}
    genes = pd.read_csv(root / "truth/truth_genes.tsv", sep="\t")
    assert {"gene", "gene_ids", "category"} <= set(genes.columns)
    assert genes["gene"].is_unique
    de = pd.read_csv(root / "truth/truth_de.tsv", sep="\t")
    assert len(de) == len(sim.truth_de) and de["log2FC"].abs().min() >= 1


def test_cells_x_genes_tsv_without_prefixes(tmp_path):
    sheet = _sheet(1, 1)
    sheet["format"] = ["delimited", "auto"]
    sheet["path"] = ["cb.tsv.gz", "ad.tsv"]
    sim = write_demo(sheet, _demo(1, 120, 600), CONTRAST, base_dir=tmp_path)
    for sample, name in (("CB1", "cb.tsv.gz"), ("AD1", "ad.tsv")):
        read = ad.io.read_text(tmp_path / name, delimiter="\t", first_column_names=True)
        assert list(read.var_names) == list(sim.adata.var_names)  # no HUMAN_ prefix
        expected = sim.truth_cells.loc[sim.truth_cells["sample"] == sample, "barcode"]
        assert list(read.obs_names) == expected.tolist()
    assert not (tmp_path / "truth").exists()  # no truth_dir, no truth tables


def test_pooled_mixed_species_file(tmp_path):
    sheet = _sheet(2, 1)
    sheet["format"] = ["delimited", "delimited", "h5ad"]
    sheet["path"] = ["pooled.csv.gz", "pooled.csv.gz", "ad.h5ad"]
    sheet["barcode_pattern"] = ["^CB1-", "^CB2-", None]
    sim = write_demo(sheet, _demo(2, 100, 600), CONTRAST, base_dir=tmp_path)
    read = sc.read_csv(tmp_path / "pooled.csv.gz").T
    truth = sim.truth_cells
    assert list(read.obs_names) == truth.loc[truth["sample"] != "AD1", "barcode"].tolist()
    for sample in ("CB1", "CB2"):
        own = truth[truth["sample"] == sample]
        assert own["barcode"].str.startswith(f"{sample}-").all()
        assert (own["artefact"] == "other_species").sum() == 5
        assert [b for b in read.obs_names if re.search(f"^{sample}-", b)] == own["barcode"].tolist()


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["^AD3-", "^AD3-"], "does not match its own"),
        (["AD", "^AD4-"], "also matches"),
        (["^AD3-", ""], "barcode_pattern"),
        (["^AD3-", "(unclosed"], "not a valid regular expression"),
    ],
)
def test_barcode_pattern_mismatch_raises(tmp_path, patterns, message):
    sheet = _sheet(0, 2)
    sheet["donor"] = ["AD3", "AD4"]
    sheet["sample"] = ["AD3", "AD4"]
    sheet["format"] = "10x_h5"
    sheet["path"] = "pooled.h5"
    sheet["barcode_pattern"] = patterns
    with pytest.raises(UserInputError, match=message):
        write_demo(sheet, _demo(0, 60, 600), CONTRAST, base_dir=tmp_path)


def test_write_demo_rejects_mixed_formats_in_one_path(tmp_path):
    sheet = _sheet(1, 1)
    sheet["format"] = ["h5ad", "loom"]
    sheet["path"] = ["same.h5ad", "same.h5ad"]
    sheet["barcode_pattern"] = ["^CB1-", "^AD1-"]
    with pytest.raises(UserInputError, match="one format"):
        write_demo(sheet, _demo(0, 60, 600), CONTRAST, base_dir=tmp_path)


def test_cli_writes_sheet_paths_relative_to_cwd(tmp_path, monkeypatch):
    sheet = _sheet(1, 1)
    sheet["format"] = ["10x_h5", "10x_mtx"]
    sheet["path"] = ["out/cb.h5", "out/ad_mtx"]
    sheet["barcode_pattern"] = ""
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    monkeypatch.chdir(tmp_path)
    status = main(
        [
            "--samples",
            "samples.tsv",
            "--truth-dir",
            "truth",
            "--seed",
            "4",
            "--cells-per-sample",
            "80",
            "--genes",
            "600",
            "--no-condition-effect",
        ]
    )
    assert status == 0
    read = sc.read_10x_h5(tmp_path / "out/cb.h5")
    assert read.n_obs == 80 and read.n_vars == 600
    assert sc.read_10x_mtx(tmp_path / "out/ad_mtx").n_obs == 80
    de = pd.read_csv(tmp_path / "truth/truth_de.tsv", sep="\t")
    assert de.empty  # --no-condition-effect
    with pytest.raises(SystemExit) as exit_info:
        main(["--samples", "missing.tsv", "--truth-dir", "truth"])
    assert exit_info.value.code == 2


# ---------------------------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("realism", ["simple", "realistic"])
def test_100k_cells_simulate_in_under_a_minute(realism):
    start = time.perf_counter()
    sim = simulate_study(_sheet(), n_cells_per_sample=12_500, n_genes=2000, seed=0, realism=realism)
    elapsed = time.perf_counter() - start
    assert sim.adata.shape == (100_000, 2000)
    assert elapsed < 60, f"simulating 100,000 cells took {elapsed:.1f} s"
