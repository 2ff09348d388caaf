"""Donor-level statistics: replicate table, covariates, the OLS group test and BH adjustment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cordatlas.compare.donor_stats import (
    bh_adjust,
    compare_groups,
    replicate_table,
    usable_covariates,
)
from cordatlas.errors import UserInputError

CONTRAST = ("cord_blood", "adult")


def _design(n_per_group: int = 4, **columns) -> pd.DataFrame:
    donors = [f"CB{i}" for i in range(n_per_group)] + [f"AD{i}" for i in range(n_per_group)]
    table = pd.DataFrame(
        {"condition": ["cord_blood"] * n_per_group + ["adult"] * n_per_group}, index=donors
    )
    for name, values in columns.items():
        table[name] = values
    return table


def test_without_covariates_it_is_students_t_test():
    rng = np.random.default_rng(0)
    design = _design()
    values = pd.DataFrame(rng.normal(size=(8, 5)), index=design.index)
    result = compare_groups(values, design, contrast=CONTRAST)
    for feature in values.columns:
        cord, adult = values[feature].iloc[:4], values[feature].iloc[4:]
        expected = stats.ttest_ind(cord, adult)
        row = result.set_index("feature").loc[feature]
        assert row["difference"] == pytest.approx(cord.mean() - adult.mean())
        assert row["t"] == pytest.approx(expected.statistic)
        assert row["pvalue"] == pytest.approx(expected.pvalue)
        assert row["df"] == 6


def test_covariate_removes_a_confounded_shift():
    # sex shifts the value by 3; cord donors are mostly female, adults mostly male; no
    # condition effect: without the covariate the difference is biased, with it close to 0
    rng = np.random.default_rng(1)
    sex = ["female"] * 5 + ["male"] + ["female"] + ["male"] * 5
    design = _design(6, sex=sex)
    y = np.where(np.array(sex) == "female", 3.0, 0.0) + rng.normal(0, 0.1, 12)
    values = pd.DataFrame({"score": y}, index=design.index)
    naive = compare_groups(values, design, contrast=CONTRAST).iloc[0]
    adjusted = compare_groups(values, design, contrast=CONTRAST, covariates=["sex"]).iloc[0]
    assert naive["difference"] > 1.5
    assert abs(adjusted["difference"]) < 0.3
    assert adjusted["covariates"] == "sex"
    assert adjusted["df"] == 9


def test_missing_values_and_too_few_replicates():
    design = _design(2)
    values = pd.DataFrame(
        {"both": [1.0, 1.2, 0.1, 0.2], "one_cord": [1.0, np.nan, 0.1, 0.3]}, index=design.index
    )
    result = compare_groups(values, design, contrast=CONTRAST).set_index("feature")
    assert result.loc["both", "pvalue"] < 0.05
    assert result.loc["one_cord", "n_condition"] == 1
    assert np.isnan(result.loc["one_cord", "pvalue"])
    assert result.loc["one_cord", "difference"] == pytest.approx(1.0 - 0.2)


def test_unusable_covariates_are_named():
    design = _design(3, study=["a"] * 3 + ["b"] * 3, tissue=["x"] * 6, sex=list("fmfmfm"))
    kept, dropped = usable_covariates(design, ["study", "tissue", "sex"])
    assert kept == ["sex"]
    assert "aliased" in dropped["study"]
    assert "one level" in dropped["tissue"]


def test_replicate_table_refuses_a_covariate_varying_within_a_donor():
    obs = pd.DataFrame(
        {
            "donor": ["D1", "D1", "D2"],
            "condition": ["adult", "adult", "cord_blood"],
            "sex": ["female", "male", "female"],
        }
    )
    with pytest.raises(UserInputError, match="donor 'D1' has several values of 'sex'"):
        replicate_table(obs, columns=["sex"])
    table = replicate_table(obs.iloc[[0, 2]], columns=["sex"])
    assert table.loc["D1", "sex"] == "female"
    with pytest.raises(UserInputError, match="not in the data"):
        replicate_table(obs, columns=["batch"])


def test_bh_matches_the_step_up_definition():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    adjusted = bh_adjust(p)
    # four tests: sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.04*4/3=0.0533 ..., monotone step-up
    assert adjusted[0] == pytest.approx(0.04)
    assert adjusted[3] == pytest.approx(min(0.03 * 4 / 2, 0.04 * 4 / 3))
    assert adjusted[1] == pytest.approx(0.04 * 4 / 3)
    assert np.isnan(adjusted[2])
    assert adjusted[4] == pytest.approx(0.5)
    assert np.isnan(bh_adjust([np.nan])).all()
