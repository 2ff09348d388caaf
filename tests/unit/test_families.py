"""Families of tests (padj within the pre-specified and exploratory families), leave-one-donor-out, and the signature tests' contamination check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from statsmodels.stats.multitest import multipletests

from cordatlas.compare.composition import COMPOSITION_COLUMNS, composition_tests
from cordatlas.compare.contamination import AMBIENT, set_contamination_flags
from cordatlas.compare.de_summary import DE_COLUMNS, read_de_table
from cordatlas.compare.deseq2 import leave_one_out_de, prespecified_genes, pseudobulk_de
from cordatlas.compare.donor_stats import EXPLORATORY, PRESPECIFIED, adjust_by_family
from cordatlas.compare.signature_tests import signature_tests
from cordatlas.compare.signatures import SUMMARY_COLUMNS
from cordatlas.genesets.library import load_gene_sets
from cordatlas.params import Contrast, default_params

LIBRARY = Path(__file__).resolve().parents[2] / "config" / "signatures.yaml"
CONTRAST = Contrast("cord_blood", "adult")
COMPARISON = default_params().comparison
CORD = [f"CB{i}" for i in range(1, 5)]
ADULT = [f"AD{i}" for i in range(1, 5)]
DONORS = CORD + ADULT
IS_CORD = np.array([d.startswith("CB") for d in DONORS])


def _bh(pvalues: np.ndarray) -> np.ndarray:
    return multipletests(pvalues, method="fdr_bh")[1]


# ============================================================================================
# Families
# ============================================================================================
def test_padj_is_benjamini_hochberg_within_each_family() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 30)
    p[[3, 17]] = np.nan  # untested rows are no tests
    pre = np.zeros(30, dtype=bool)
    pre[[0, 3, 5, 9, 20]] = True
    family, padj, padj_all = adjust_by_family(p, pre)
    assert list(family[pre]) == [PRESPECIFIED] * 5 and set(family[~pre]) == {EXPLORATORY}
    for mask in (pre, ~pre):
        ok = mask & ~np.isnan(p)
        np.testing.assert_allclose(padj[ok], _bh(p[ok]))
    ok = ~np.isnan(p)
    np.testing.assert_allclose(padj_all[ok], _bh(p[ok]))
    assert np.isnan(padj[[3, 17]]).all()
    # the few pre-specified tests are not diluted by the exploratory ones
    assert (padj[pre & ok] <= padj_all[pre & ok] + 1e-12).all()


def _proportions(shares: dict[str, list[float]], n_total: int = 2000) -> pd.DataFrame:
    """Per donor cell counts from shares (types x donors in DONORS order)."""
    rows = []
    for j, donor in enumerate(DONORS):
        counts = {t: round(v[j] * n_total) for t, v in shares.items()}
        total = sum(counts.values())
        for cell_type, n in counts.items():
            rows.append(
                {
                    "donor": donor,
                    "condition": "cord_blood" if IS_CORD[j] else "adult",
                    "cell_type": cell_type,
                    "n_cells": n,
                    "n_total": total,
                    "proportion": n / total,
                }
            )
    return pd.DataFrame(rows)


def _design() -> pd.DataFrame:
    return pd.DataFrame(
        {"condition": np.where(IS_CORD, "cord_blood", "adult")},
        index=pd.Index(DONORS, name="donor"),
    )


def _composition_study() -> pd.DataFrame:
    """Eight steady types; STEADY 3x in every cord donor; FRAGILE up in cord, most in CB1.

    FRAGILE's log shares (cord 1.0, 0.9, 0.2, 0.8; adult 0.1, 0.0, 0.3, -0.1) give p < 0.05
    with every donor and p > 0.05 without CB1.
    """
    rng = np.random.default_rng(1)
    shares = {f"T{i}": list(0.06 * np.exp(rng.normal(0, 0.1, 8))) for i in range(8)}
    shares["STEADY"] = list(np.where(IS_CORD, 0.12, 0.04) * np.exp(rng.normal(0, 0.1, 8)))
    shares["FRAGILE"] = list(0.06 * np.exp([1.0, 0.9, 0.2, 0.8, 0.1, 0.0, 0.3, -0.1]))
    return _proportions(shares)


def test_composition_families_and_leave_one_out() -> None:
    proportions = _composition_study()
    tests = composition_tests(
        proportions, _design(), COMPARISON, CONTRAST, prespecified=["STEADY", "T0"]
    ).set_index("cell_type")
    assert list(composition_tests(proportions, _design(), COMPARISON, CONTRAST).columns) == (
        COMPOSITION_COLUMNS
    )
    pre = tests.index.isin(["STEADY", "T0"])
    assert (tests.loc[pre, "family"] == PRESPECIFIED).all()
    assert (tests.loc[~pre, "family"] == EXPLORATORY).all()
    p = tests["pvalue"].to_numpy()
    np.testing.assert_allclose(tests.loc[pre, "padj"], _bh(p[pre]))
    np.testing.assert_allclose(tests.loc[~pre, "padj"], _bh(p[~pre]))
    np.testing.assert_allclose(tests["padj_all"], _bh(p))
    # without a library expectation every row is exploratory and padj is over all rows
    plain = composition_tests(proportions, _design(), COMPARISON, CONTRAST).set_index("cell_type")
    assert (plain["family"] == EXPLORATORY).all()
    np.testing.assert_allclose(plain["padj"], plain["padj_all"])
    # CB1 carries FRAGILE: significant with all donors, not without CB1
    assert tests.at["FRAGILE", "padj"] < 0.05 and tests.at["STEADY", "padj"] < 0.05
    assert tests.at["FRAGILE", "survives_leave_one_out"] == False  # noqa: E712
    assert tests.at["FRAGILE", "loo_weakest_donor"] == "CB1"
    for donor in DONORS:
        without = composition_tests(
            proportions[proportions["donor"] != donor],
            _design().drop(index=donor),
            COMPARISON,
            CONTRAST,
        ).set_index("cell_type")
        assert without.at["FRAGILE", "pvalue"] <= tests.at["FRAGILE", "loo_max_pvalue"] + 1e-12
        if donor == "CB1":
            assert without.at["FRAGILE", "pvalue"] == pytest.approx(
                tests.at["FRAGILE", "loo_max_pvalue"]
            )
            assert without.at["FRAGILE", "pvalue"] >= 0.05
    assert tests.at["STEADY", "survives_leave_one_out"] == True  # noqa: E712
    assert tests.at["STEADY", "loo_max_pvalue"] < 0.05
    not_significant = tests["padj"] >= 0.05
    assert tests.loc[not_significant, "survives_leave_one_out"].isna().all()


# ============================================================================================
# Pseudobulk DE: families and leave-one-out
# ============================================================================================
def _de_pseudobulk() -> ad.AnnData:
    """One cell type in 4 vs 4 donors: UP_ALL 4x in every cord donor, UP_ONE up most in CB1.

    UP_ONE's counts are 300 x exp(0.9 x (1.4, 0.6, 0.3, 0.5 | 0.1, 0, 0.2, -0.1)): p about 0.006
    with every donor, about 0.06 without CB1 (PyDESeq2 0.5, seed 2).
    """
    rng = np.random.default_rng(2)
    n_genes = 300
    genes = ["UP_ALL", "UP_ONE"] + [f"G{i}" for i in range(n_genes - 2)]
    base = rng.gamma(2.0, 50.0, n_genes)
    fragile = 300 * np.exp(0.9 * np.array([1.4, 0.6, 0.3, 0.5, 0.1, 0.0, 0.2, -0.1]))
    rows = []
    for j in range(len(DONORS)):
        mean = base * np.exp(rng.normal(0, 0.05, n_genes))
        if IS_CORD[j]:
            mean[0] *= 4.0
        row = rng.negative_binomial(8, 8 / (8 + mean))
        row[1] = round(fragile[j])
        rows.append(row)
    obs = pd.DataFrame(
        {
            "cell_type": "T_cell",
            "donor": DONORS,
            "condition": np.where(IS_CORD, "cord_blood", "adult"),
            "n_cells": 100,
        },
        index=[f"T_cell|{d}" for d in DONORS],
    )
    return ad.AnnData(
        X=sp.csr_matrix(np.array(rows, dtype=np.float32)), obs=obs, var=pd.DataFrame(index=genes)
    )


def test_pseudobulk_de_families_and_leave_one_out(tmp_path) -> None:
    pseudobulk = _de_pseudobulk()
    prespecified = {"UP_ALL", "UP_ONE", "G0", "NOT_MEASURED"}
    results, notes = pseudobulk_de(
        pseudobulk, COMPARISON, CONTRAST, cell_type="T_cell", prespecified=prespecified
    )
    table = results.set_index("gene")
    pre = table.index.isin(list(prespecified))
    assert (table.loc[pre, "family"] == PRESPECIFIED).all() and pre.sum() == 3
    assert (table.loc[~pre, "family"] == EXPLORATORY).all()
    p = table["pvalue"]
    ok = p.notna().to_numpy()
    np.testing.assert_allclose(table.loc[pre & ok, "padj"], _bh(p[pre & ok].to_numpy()))
    np.testing.assert_allclose(table.loc[~pre & ok, "padj"], _bh(p[~pre & ok].to_numpy()))
    np.testing.assert_allclose(table.loc[ok, "padj_all"], _bh(p[ok].to_numpy()))
    assert any("3 pre-specified genes" in n for n in notes)
    assert table["survives_leave_one_out"].isna().all()  # filled by leave_one_out_de

    assert table.at["UP_ALL", "padj"] < 0.05 and table.at["UP_ONE", "padj"] < 0.05
    # among all ~300 genes UP_ONE would not be significant: the family keeps the hypothesis
    assert table.at["UP_ONE", "padj_all"] >= 0.05
    capped = dataclasses.replace(COMPARISON, loo_max_genes=1)
    loo, loo_notes = leave_one_out_de(pseudobulk, results, capped, CONTRAST, cell_type="T_cell")
    loo = loo.set_index("gene")
    significant = loo.index[loo["padj"] < 0.05]
    judged = loo["survives_leave_one_out"].notna()
    assert judged.sum() == 1 and judged[loo["pvalue"].idxmin()]
    if len(significant) > 1:
        assert any("loo_max_genes" in n for n in loo_notes)
    written, _ = leave_one_out_de(pseudobulk, results, COMPARISON, CONTRAST, cell_type="T_cell")
    loo = written.set_index("gene")
    assert loo.at["UP_ALL", "survives_leave_one_out"] == True  # noqa: E712
    assert loo.at["UP_ONE", "survives_leave_one_out"] == False  # noqa: E712
    assert loo.at["UP_ONE", "loo_weakest_donor"] == "CB1"
    assert loo.at["UP_ONE", "loo_max_pvalue"] >= 0.05
    assert loo.loc[loo["padj"] >= 0.05, "survives_leave_one_out"].isna().all()
    # the columns survive the round trip through a TSV
    path = tmp_path / "t.tsv"
    written.to_csv(path, sep="\t", index=False)
    back = read_de_table(path)
    assert list(back.columns) == DE_COLUMNS
    assert back["survives_leave_one_out"].dtype == "boolean"
    pd.testing.assert_series_equal(
        back.set_index("gene")["survives_leave_one_out"], loo["survives_leave_one_out"]
    )
    assert (back["family"] == loo["family"].to_numpy()).all()


def test_de_summary_counts_each_family() -> None:
    from cordatlas.compare.de_summary import de_summary

    pseudobulk = _de_pseudobulk()
    prespecified = {"UP_ALL", "UP_ONE", "G0", "NOT_MEASURED"}
    results, _ = pseudobulk_de(
        pseudobulk, COMPARISON, CONTRAST, cell_type="T_cell", prespecified=prespecified
    )
    plan = pd.DataFrame({"cell_type": ["T_cell"], "evidence": ["donor_level"]})
    row = de_summary(plan, {"T_cell": results}, alpha=0.05).iloc[0]
    pre = results["family"] == PRESPECIFIED
    tested = results["pvalue"].notna()
    significant = results["padj"] < 0.05
    assert row["n_prespecified"] == (pre & tested).sum() == 3
    assert row["n_significant_prespecified"] == (pre & significant).sum() >= 2
    assert row["n_significant"] == significant.sum() >= row["n_significant_prespecified"]
    # a table without the family column (cell-level, or written before families): none
    row = de_summary(plan, {"T_cell": results.drop(columns="family")}, alpha=0.05).iloc[0]
    assert row["n_prespecified"] == 0 and row["n_significant_prespecified"] == 0


def test_prespecified_genes_follow_the_library_expectations() -> None:
    library = load_gene_sets(LIBRARY)
    genes = prespecified_genes(library, "erythroid")
    sets = library["gene_sets"]
    expected = set()
    for entry in sets.values():
        types = entry.get("cell_types")
        if entry.get("expected_direction") and (types is None or "erythroid" in types):
            expected.update(entry["genes"])
    assert genes == expected and genes
    assert prespecified_genes(library, "no_such_type") == {
        g
        for e in sets.values()
        if e.get("expected_direction") and e.get("cell_types") is None
        for g in e["genes"]
    }


# ============================================================================================
# Signature tests: contamination
# ============================================================================================
HB = ["HBG1", "HBG2", "HBA1", "HBB"]
T_GENES = ["CD3E", "IL7R", "CCR7", "LEF1"]
N_HOUSEKEEPING = 200


def _soup_study(seed: int = 0) -> ad.AnnData:
    """T cells, erythroid cells and monocytes in 4 cord and 4 adult donors.

    Erythroid cells express the globins; T cells none. T's own CD3E/IL7R/CCR7/LEF1 are 2x in
    cord (planted). Each T pseudobulk also holds a soup: a fraction (8 % cord, 1 % adult)
    of the donor's overall profile, as lysed red cells leave globins in every droplet.
    """
    rng = np.random.default_rng(seed)
    genes = HB + T_GENES + [f"HK{i}" for i in range(N_HOUSEKEEPING)]
    base = np.r_[np.zeros(len(HB) + len(T_GENES)), rng.uniform(0.05, 0.5, N_HOUSEKEEPING)]
    profiles = {t: base.copy() for t in ("T_cell", "erythroid", "monocyte")}
    profiles["erythroid"][: len(HB)] = 40.0
    profiles["T_cell"][len(HB) : len(HB) + len(T_GENES)] = 2.0
    rows, obs = [], []
    for donor, cord in zip(DONORS, IS_CORD, strict=True):
        n_cells = {"T_cell": 400, "erythroid": 200, "monocyte": 200}
        native = {t: n * profiles[t] for t, n in n_cells.items()}
        planted = np.ones(len(genes))
        planted[len(HB) : len(HB) + len(T_GENES)] = 2.0 if cord else 1.0
        native["T_cell"] = native["T_cell"] * planted
        per_cell = native["T_cell"].sum() / n_cells["T_cell"]
        overall = sum(native.values())
        rho = 0.08 if cord else 0.01
        native["T_cell"] = native["T_cell"] + rho * n_cells["T_cell"] * per_cell * (
            overall / overall.sum()
        )
        for cell_type, mean in native.items():
            rows.append(rng.poisson(mean))
            obs.append(
                {
                    "cell_type": cell_type,
                    "donor": donor,
                    "condition": "cord_blood" if cord else "adult",
                    "n_cells": n_cells[cell_type],
                }
            )
    frame = pd.DataFrame(obs)
    frame.index = (frame["cell_type"] + "|" + frame["donor"]).to_numpy()
    return ad.AnnData(
        X=sp.csr_matrix(np.array(rows, dtype=np.float32)), obs=frame, var=pd.DataFrame(index=genes)
    )


def test_set_contamination_flags_a_soup_set_and_not_a_planted_one() -> None:
    pseudobulk = _soup_study()
    counts = pseudobulk.to_df()
    t_rows = pseudobulk.obs["cell_type"] == "T_cell"
    # the soup makes the globin set look higher in cord T cells
    hb_cord = counts.loc[t_rows & (pseudobulk.obs["condition"] == "cord_blood"), HB].sum().sum()
    hb_adult = counts.loc[t_rows & (pseudobulk.obs["condition"] == "adult"), HB].sum().sum()
    assert hb_cord > 3 * hb_adult
    sets = {"user_globin": HB, "user_t_planted": T_GENES, "user_absent": ["NOPE1", "NOPE2"]}
    kwargs = {
        "cell_type": "T_cell",
        "donors": DONORS,
        "is_condition": IS_CORD,
        "cell_type_key": "cell_type",
        "replicate_key": "donor",
        "max_fraction": COMPARISON.contamination_max_fraction,
        "min_explained": COMPARISON.contamination_min_explained,
    }
    up = {"user_globin": 0.4, "user_t_planted": 0.4, "user_absent": 0.4}
    flags = set_contamination_flags(pseudobulk, sets, up, **kwargs).set_index("signature")
    assert flags.at["user_globin", "contamination_flag"]
    assert flags.at["user_globin", "contamination_source"] in {"erythroid", AMBIENT}
    assert not flags.at["user_t_planted", "contamination_flag"]
    assert not flags.at["user_absent", "contamination_flag"]
    # the direction criterion: the soup cannot explain the globin set going down in cord
    down = {**up, "user_globin": -0.4}
    flags = set_contamination_flags(pseudobulk, sets, down, **kwargs).set_index("signature")
    assert not flags.at["user_globin", "contamination_flag"]
    # without a soup the globin set is no longer explained
    clean = _soup_study()
    is_t = (clean.obs["cell_type"] == "T_cell").to_numpy()
    x = clean.X.toarray()
    x[np.ix_(is_t, np.arange(len(HB)))] = 0
    clean.X = sp.csr_matrix(x)
    flags = set_contamination_flags(clean, sets, up, **kwargs).set_index("signature")
    assert not flags["contamination_flag"].any()


def test_signature_tests_carry_the_contamination_columns() -> None:
    library = load_gene_sets(LIBRARY)
    pseudobulk = _soup_study()
    rng = np.random.default_rng(4)
    values = pd.DataFrame(
        {
            "user_globin": np.where(IS_CORD, 0.5, 0.0) + rng.normal(0, 0.05, 8),
            "user_t_planted": np.where(IS_CORD, 0.5, 0.0) + rng.normal(0, 0.05, 8),
        },
        index=DONORS,
    )
    long = values.rename_axis("replicate").reset_index().melt(id_vars="replicate")
    long = long.rename(columns={"variable": "signature", "value": "mean_score"})
    long["cell_type"] = "T_cell"
    long["condition"] = np.where(long["replicate"].str.startswith("CB"), "cord_blood", "adult")
    long["n_cells"] = 400
    kwargs = {"control_flag_pvalue": 0.1, "control_flag_difference": 0.5, "control": None}
    sets = {"user_globin": HB, "user_t_planted": T_GENES}
    results = signature_tests(
        long[SUMMARY_COLUMNS], _design(), library, COMPARISON, CONTRAST,
        pseudobulk=pseudobulk, set_genes=sets, **kwargs,
    ).set_index("signature")  # fmt: skip
    assert results.at["user_globin", "contamination_flag"] == True  # noqa: E712
    assert "contamination_flag" in results.at["user_globin", "note"]
    assert results.at["user_t_planted", "contamination_flag"] == False  # noqa: E712
    assert "contamination" not in results.at["user_t_planted", "note"]
    # no pseudobulks: not checked (NA), not "clean"
    unchecked = signature_tests(
        long[SUMMARY_COLUMNS], _design(), library, COMPARISON, CONTRAST, **kwargs
    )
    assert unchecked["contamination_flag"].isna().all()


def test_leave_one_out_refits_keep_every_retested_gene_and_a_seeded_background():
    from cordatlas.compare.deseq2 import _refit_genes

    tested = pd.Index([f"g{i}" for i in range(50)])
    targets = pd.Index(["g3", "g40"])
    first = _refit_genes(tested, targets, background=10, seed=0)
    assert len(first) == 12 and set(targets) <= set(first)
    assert list(first) == [g for g in tested if g in set(first)]  # tested order kept
    assert first.equals(_refit_genes(tested, targets, background=10, seed=0))
    assert _refit_genes(tested, targets, background=48, seed=0).equals(tested)
    assert _refit_genes(tested, targets, background=None, seed=0).equals(tested)
