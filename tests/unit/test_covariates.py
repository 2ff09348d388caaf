"""Numeric covariates (age): one centred slope in every donor-level model, never categories."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from cordatlas.compare import composition
from cordatlas.compare.deseq2 import pseudobulk_de
from cordatlas.compare.donor_stats import compare_groups, replicate_table, usable_covariates
from cordatlas.compare.enrichment import Pseudobulks, enrich_cell_type
from cordatlas.compare.signature_tests import feature_tests
from cordatlas.config import check_covariates, read_samples, read_schema, validate_config
from cordatlas.errors import UserInputError
from cordatlas.params import Contrast, default_params

ROOT = Path(__file__).resolve().parents[2]
CORD, ADULT = "cord_blood", "adult"
CONTRAST = Contrast(CORD, ADULT)
AGE = {"name": "age_years", "type": "numeric"}
COMPARISON = default_params().comparison
NUMERIC = dataclasses.replace(COMPARISON, covariates=(AGE,))
#: 6 + 6 donors; age partly correlated with condition (adults older on average, ranges overlap).
AGES = np.array([20.0, 26, 31, 38, 44, 52, 29, 35, 41, 47, 55, 63])


def _design(ages: np.ndarray = AGES) -> pd.DataFrame:
    n = len(ages)
    donors = [f"D{i:02d}" for i in range(n)]
    return pd.DataFrame(
        {"condition": [CORD] * (n // 2) + [ADULT] * (n - n // 2), "age_years": ages},
        index=pd.Index(donors, name="donor"),
    )


def _statsmodels_fit(y: np.ndarray, design: pd.DataFrame):
    """Independent OLS of y on intercept + condition (1 = cord) + raw (uncentred) age."""
    x = np.column_stack(
        [(design["condition"] == CORD).astype(float), design["age_years"].astype(float)]
    )
    return sm.OLS(y, sm.add_constant(x)).fit()


def test_compare_groups_numeric_covariate_matches_statsmodels() -> None:
    rng = np.random.default_rng(1)
    design = _design()
    is_cord = (design["condition"] == CORD).to_numpy(dtype=float)
    y = 2.0 + 0.5 * is_cord + 0.08 * AGES + rng.normal(0, 0.2, len(AGES))
    values = pd.DataFrame({"score": y}, index=design.index)
    # the sheet's text form ("20.0"), as replicate_table and the pseudobulk obs carry it
    text = design.assign(age_years=design["age_years"].astype(str))
    row = compare_groups(
        values, text, contrast=(CORD, ADULT), covariates=["age_years"], numeric=["age_years"]
    ).iloc[0]
    fit = _statsmodels_fit(y, design)
    assert row["covariates"] == "age_years"
    assert row["df"] == len(AGES) - 3
    assert row["difference"] == pytest.approx(fit.params[1], rel=1e-10)
    assert row["se"] == pytest.approx(fit.bse[1], rel=1e-10)
    assert row["pvalue"] == pytest.approx(fit.pvalues[1], rel=1e-8)
    assert abs(row["difference"] - 0.5) < 0.3
    # unadjusted, age's confounding pulls the effect far from the planted 0.5
    naive = compare_groups(values, text, contrast=(CORD, ADULT)).iloc[0]
    assert naive["difference"] < 0


def test_numeric_covariate_is_never_turned_into_categories() -> None:
    """3 + 3 donors with six ages: as categories (the old bug) age is dropped; as a slope, df 3."""
    design = _design(np.array([22.0, 30, 41, 35, 48, 60]))
    kept, dropped = usable_covariates(design, ["age_years"], numeric=["age_years"])
    assert kept == ["age_years"] and dropped == {}
    _, as_categories = usable_covariates(design, ["age_years"])
    assert "age_years" in as_categories  # one level per donor: nothing left to estimate
    y = np.array([1.0, 1.4, 2.1, 0.2, 0.9, 1.5])
    row = compare_groups(
        pd.DataFrame({"f": y}, index=design.index),
        design,
        contrast=(CORD, ADULT),
        covariates=["age_years"],
        numeric=["age_years"],
    ).iloc[0]
    assert row["covariates"] == "age_years" and row["df"] == 3


def test_aliased_numeric_covariate_is_dropped_with_its_reason() -> None:
    ages = np.array([0.0] * 4 + [35.0] * 4)  # one age per condition: a linear function of it
    kept, dropped = usable_covariates(_design(ages), ["age_years"], numeric=["age_years"])
    assert kept == [] and "aliased with condition" in dropped["age_years"]
    kept, dropped = usable_covariates(
        _design(np.full(8, 30.0)), ["age_years"], numeric=["age_years"]
    )
    assert kept == [] and "one value" in dropped["age_years"]


def test_signature_feature_tests_adjust_for_age() -> None:
    rng = np.random.default_rng(2)
    design = _design()
    is_cord = (design["condition"] == CORD).to_numpy(dtype=float)
    y = -0.3 * is_cord + 0.02 * AGES + rng.normal(0, 0.05, len(AGES))
    values = pd.DataFrame({"IFN_response": y}, index=design.index)
    row = feature_tests(values, design, comparison=NUMERIC, contrast=(CORD, ADULT)).iloc[0]
    fit = _statsmodels_fit(y, design)
    assert row["test"] == "linear_model_t" and row["covariates"] == "age_years"
    assert row["difference"] == pytest.approx(fit.params[1], rel=1e-10)
    assert row["pvalue"] == pytest.approx(fit.pvalues[1], rel=1e-8)
    assert row["ci_low"] < -0.3 < row["ci_high"]


def test_composition_adjusts_for_age() -> None:
    rng = np.random.default_rng(3)
    design = _design()
    is_cord = (design["condition"] == CORD).to_numpy(dtype=float)
    logit_b = -1.0 + 0.6 * is_cord + 0.03 * (AGES - AGES.mean()) + rng.normal(0, 0.1, len(AGES))
    n_total = 2000
    n_b = np.round(n_total / (1 + np.exp(-logit_b))).astype(int)
    proportions = pd.DataFrame(
        {
            "donor": np.repeat(design.index, 2),
            "cell_type": ["B", "T"] * len(AGES),
            "n_cells": np.column_stack([n_b, n_total - n_b]).ravel(),
            "n_total": n_total,
        }
    )
    proportions["proportion"] = proportions["n_cells"] / n_total
    table = composition.composition_tests(proportions, design, NUMERIC, CONTRAST)
    row = table.set_index("cell_type").loc["B"]
    y = composition.transform_proportions(n_b, np.full(len(AGES), n_total), n_types=2)
    fit = _statsmodels_fit(y, design)
    assert row["covariates"] == "age_years"
    assert row["difference"] == pytest.approx(fit.params[1], rel=1e-10)
    assert abs(row["difference"] - 0.6) < 0.25


def _pseudobulks(seed: int = 4) -> tuple[ad.AnnData, np.ndarray, np.ndarray]:
    """12 donor pseudobulks of one cell type: genes 0-39 follow age, 40-59 condition."""
    rng = np.random.default_rng(seed)
    design = _design()
    is_cord = (design["condition"] == CORD).to_numpy(dtype=float)
    n_genes = 200
    age_slope = np.zeros(n_genes)
    age_slope[:40] = 0.04  # log2 per year: 0.6 log2 across the groups' mean age gap
    condition_lfc = np.zeros(n_genes)
    condition_lfc[40:60] = 1.0
    base = rng.uniform(50, 400, n_genes)
    log2_mu = (
        np.log2(base)[None, :]
        + np.outer(AGES - AGES.mean(), age_slope)
        + np.outer(is_cord, condition_lfc)
    )
    dispersion = 0.05
    mu = 2.0**log2_mu
    counts = rng.negative_binomial(1 / dispersion, 1 / (1 + mu * dispersion))
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(["B"] * len(AGES)),
            "donor": design.index,
            "condition": pd.Categorical(design["condition"]),
            "n_cells": 200,
            "age_years": design["age_years"].astype(str).to_numpy(),
        },
        index=[f"B|{d}" for d in design.index],
    )
    var = pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])
    return ad.AnnData(X=counts.astype(np.float32), obs=obs, var=var), age_slope, condition_lfc


@pytest.fixture(scope="module")
def deseq2_fits() -> dict:
    pseudobulk, age_slope, condition_lfc = _pseudobulks()
    adjusted = pseudobulk_de(pseudobulk, NUMERIC, CONTRAST, cell_type="B")
    naive = pseudobulk_de(pseudobulk, COMPARISON, CONTRAST, cell_type="B")
    return {"adjusted": adjusted, "naive": naive, "age": age_slope, "condition": condition_lfc}


def test_deseq2_numeric_covariate_absorbs_the_age_effect(deseq2_fits: dict) -> None:
    (adjusted, notes), (naive, _) = deseq2_fits["adjusted"], deseq2_fits["naive"]
    adjusted, naive = adjusted.set_index("gene"), naive.set_index("gene")
    age_genes = [f"g{i}" for i in range(40)]
    condition_genes = [f"g{i}" for i in range(40, 60)]
    gap = float(AGES[6:].mean() - AGES[:6].mean())  # adults are older: cord lower on age genes
    assert (adjusted["covariates"] == "age_years").all()
    assert any("~covariate" not in n and "age_years + condition" in n for n in notes)
    # the age effect is recovered: without age the condition coefficient of age genes is
    # -slope x gap; with it, the bias is gone
    assert naive.loc[age_genes, "log2FC"].median() == pytest.approx(-0.04 * gap, abs=0.15)
    assert abs(adjusted.loc[age_genes, "log2FC"].median()) < 0.12
    assert adjusted.loc[condition_genes, "log2FC"].median() == pytest.approx(1.0, abs=0.2)
    assert (adjusted.loc[condition_genes, "padj"] < 0.05).mean() > 0.8


def test_deseq2_drops_an_aliased_numeric_covariate_with_a_note() -> None:
    pseudobulk, *_ = _pseudobulks(seed=5)
    ages = np.where(pseudobulk.obs["condition"].astype(str) == CORD, 0.0, 40.0)
    pseudobulk.obs["age_years"] = ages.astype(str)
    results, notes = pseudobulk_de(pseudobulk[:, :60].copy(), NUMERIC, CONTRAST, cell_type="B")
    assert (results["covariates"] == "").all()
    assert any("covariate 'age_years' not used: aliased with condition" in n for n in notes)


def test_replicate_table_compares_numeric_values_as_numbers() -> None:
    obs = pd.DataFrame(
        {
            "donor": ["D1", "D1", "D2"],
            "condition": [CORD, CORD, ADULT],
            "age_years": ["0", "0.0", "41"],
        }
    )
    table = replicate_table(obs, columns=["age_years"], numeric=["age_years"])
    assert table["age_years"].tolist() == [0.0, 41.0]
    with pytest.raises(UserInputError, match="several values"):
        replicate_table(obs, columns=["age_years"])  # as text "0" and "0.0" differ
    obs.loc[2, "age_years"] = "forty"
    with pytest.raises(UserInputError, match=r"donor 'D2'.*'age_years'.*'forty'"):
        replicate_table(obs, columns=["age_years"], numeric=["age_years"])


HEADER = "sample\tdonor\tcondition\ttissue\tstudy\ttechnology\tformat\tpath\tage_years"


def _sheet(tmp_path: Path, *ages: str) -> Path:
    rows = [
        f"S{i}\tD{i}\t{CORD if i % 2 else ADULT}\tblood\ts1\t10x\th5ad\t{i}.h5ad\t{age}"
        for i, age in enumerate(ages)
    ]
    path = tmp_path / "samples.tsv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_sheet_value_that_is_not_a_number_names_sample_and_column(tmp_path: Path) -> None:
    schema = read_schema(ROOT / "workflow/schemas/samples.schema.yaml")
    contrast = {"condition": CORD, "reference": ADULT}
    with pytest.raises(UserInputError, match=r"sample 'S1'.*column 'age_years': 'thirty'"):
        read_samples(_sheet(tmp_path, "30", "thirty"), schema, contrast=contrast)
    samples = read_samples(_sheet(tmp_path, "30", "", "41", "0"), schema, contrast=contrast)
    with pytest.raises(UserInputError, match=r"sample 'S1', column 'age_years': value empty"):
        check_covariates(samples, [AGE])
    check_covariates(samples, ["sex"])  # not adjusted for: an empty age is fine
    with pytest.raises(UserInputError, match="declare it"):
        check_covariates(samples, ["age_years"])
    check_covariates(read_samples(_sheet(tmp_path, "30", "2"), schema, contrast=contrast), [AGE])


def test_config_accepts_both_covariate_forms() -> None:
    schema = read_schema(ROOT / "workflow/schemas/config.schema.yaml")
    config = {
        "samples": "config/samples.tsv",
        "contrast": {"condition": CORD, "reference": ADULT},
        "comparison": {"covariates": ["sex", AGE]},
    }
    params = default_params(comparison=validate_config(config, schema)["comparison"])
    assert params.comparison.covariates == ("sex", "age_years")
    assert params.comparison.numeric_covariates == ("age_years",)
    config["comparison"]["covariates"] = [{"name": "age_years", "type": "ordinal"}]
    with pytest.raises(UserInputError, match=r"covariates\.0\.type: 'ordinal' is not allowed"):
        validate_config(config, schema)
    config["comparison"]["covariates"] = [{"name": "age_years"}]
    with pytest.raises(UserInputError, match="'type' is a required property"):
        validate_config(config, schema)


def test_camera_design_takes_the_numeric_covariate_as_one_column(deseq2_fits: dict) -> None:
    """The enrichment design uses the DE test's covariates; age must stay a slope there too."""
    de, _ = deseq2_fits["adjusted"]
    pseudobulk, *_ = _pseudobulks()
    pseudobulks = Pseudobulks(
        counts=pseudobulk.to_df().T.astype("int64"), obs=pseudobulk.obs.astype(str)
    )
    sets = {"condition_up": [f"g{i}" for i in range(40, 60)], "age": [f"g{i}" for i in range(40)]}
    limits = default_params().enrichment
    result = enrich_cell_type(
        de, sets, limits, CONTRAST, pseudobulks=pseudobulks, numeric_covariates=["age_years"]
    ).set_index("gene_set")
    assert result.loc["condition_up", "direction"] == "up"
    assert result.loc["condition_up", "pvalue"] < 0.01
    assert result.loc["age", "pvalue"] > result.loc["condition_up", "pvalue"]
    with pytest.raises(UserInputError, match="full rank"):  # 12 ages as 12 categories
        enrich_cell_type(de, sets, limits, CONTRAST, pseudobulks=pseudobulks)
