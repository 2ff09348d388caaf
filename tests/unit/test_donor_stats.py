"""Donor-level statistics: replicate table, covariates, the OLS group test, limma's moderation and BH."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from cordatlas.compare.donor_stats import (
    bh_adjust,
    compare_groups,
    moderate,
    ols_condition,
    replicate_table,
    squeeze_var,
    trigamma_inverse,
    usable_covariates,
    welch_t,
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


def test_trigamma_inverse_solves_trigamma():
    targets = np.array([1e-8, 1e-3, 0.05, 0.4, 1.0, 3.0, 50.0, 1e8])
    y = trigamma_inverse(targets)
    solvable = (targets >= 1e-6) & (targets <= 1e7)
    np.testing.assert_allclose(special.polygamma(1, y[solvable]), targets[solvable], rtol=1e-8)
    # the asymptotes outside: trigamma(y) ~ 1/y for large y, ~ 1/y^2 for small y
    assert y[0] == pytest.approx(1e8) and y[-1] == pytest.approx(1e-4)
    assert np.isnan(trigamma_inverse(-1.0)).all()


def test_squeeze_var_matches_the_moment_equations_by_hand():
    s2 = np.array([0.2, 0.5, 1.0, 1.5, 3.0, 0.8])
    d = 5.0
    e = np.log(s2) - special.digamma(d / 2) + np.log(d / 2)
    excess = e.var(ddof=1) - special.polygamma(1, d / 2)
    assert excess > 0
    # d0 solved independently of the Newton iteration, by bracketing
    half_d0 = optimize.brentq(lambda y: special.polygamma(1, y) - excess, 1e-6, 1e6, xtol=1e-14)
    d0 = 2 * half_d0
    s20 = np.exp(e.mean() + special.digamma(d0 / 2) - np.log(d0 / 2))
    post, prior, df_prior = squeeze_var(s2, d)
    assert df_prior == pytest.approx(d0, rel=1e-7)
    assert prior == pytest.approx(s20, rel=1e-7)
    np.testing.assert_allclose(post, (d * s2 + d0 * s20) / (d + d0), rtol=1e-7)
    # posterior variances lie between each variance and the prior
    assert (np.abs(post - s20) <= np.abs(s2 - s20)).all()


def test_squeeze_var_recovers_a_known_prior_and_edge_cases():
    rng = np.random.default_rng(3)
    d0, s20, d = 8.0, 0.5, 4
    true = d0 * s20 / rng.chisquare(d0, 20_000)
    s2 = true * rng.chisquare(d, 20_000) / d
    _, prior, df_prior = squeeze_var(s2, d)
    assert prior == pytest.approx(s20, rel=0.03)
    assert df_prior == pytest.approx(d0, rel=0.1)
    # equal variances: no excess spread, infinite prior df, every posterior the prior
    post, prior, df_prior = squeeze_var(np.full(5, 2.0), 3)
    assert df_prior == np.inf
    np.testing.assert_allclose(post, prior)
    # one usable variance: nothing to borrow; NaN stays NaN
    post, prior, df_prior = squeeze_var(np.array([1.0, np.nan]), np.array([3.0, 3.0]))
    assert post[0] == 1.0 and np.isnan(post[1]) and df_prior == 0.0 and np.isnan(prior).all()


def test_squeeze_var_trend_follows_the_covariate_by_hand():
    # log prior variance linear in the covariate: the trend fit is least squares of e on it
    rng = np.random.default_rng(6)
    level = np.linspace(-4, 0, 2_000)
    d, d0 = 6.0, 10.0
    true = np.exp(-1.0 - 0.8 * level) * d0 / rng.chisquare(d0, level.size)
    s2 = true * rng.chisquare(d, level.size) / d
    post, prior, df_prior = squeeze_var(s2, d, covariate=level)
    e = np.log(s2) - special.digamma(d / 2) + np.log(d / 2)
    basis = np.column_stack([np.ones_like(level), level])
    coef = np.linalg.lstsq(basis, e, rcond=None)[0]
    residual = e - basis @ coef
    excess = residual @ residual / (level.size - 2) - special.polygamma(1, d / 2)
    half = optimize.brentq(lambda y: special.polygamma(1, y) - excess, 1e-6, 1e6, xtol=1e-14)
    expected = np.exp(basis @ coef + special.digamma(half) - np.log(half))
    assert df_prior == pytest.approx(2 * half, rel=1e-7)
    np.testing.assert_allclose(prior, expected, rtol=1e-7)
    np.testing.assert_allclose(post, (d * s2 + 2 * half * expected) / (d + 2 * half), rtol=1e-7)
    assert df_prior == pytest.approx(d0, rel=0.2)  # and the known prior is recovered
    np.testing.assert_allclose(prior[[0, -1]], np.exp(-1.0 - 0.8 * level[[0, -1]]), rtol=0.15)


def test_moderated_t_against_a_hand_computation():
    rng = np.random.default_rng(4)
    design = _design()
    values = pd.DataFrame(rng.normal(size=(8, 6)) * [0.5, 1, 1, 2, 1, 0.7], index=design.index)
    values.iloc[:4, 0] += 2.0
    result = moderate(compare_groups(values, design, contrast=CONTRAST))
    cord, adult = values.iloc[:4], values.iloc[4:]
    s2 = ((cord - cord.mean()) ** 2).sum() + ((adult - adult.mean()) ** 2).sum()
    s2 = (s2 / 6).to_numpy()
    post, _, d0 = squeeze_var(s2, 6.0)
    difference = (cord.mean() - adult.mean()).to_numpy()
    se = np.sqrt(post * (1 / 4 + 1 / 4))
    df_total = min(6 + d0, 6 * 6)  # limma caps the total df at the pooled residual df
    np.testing.assert_allclose(result["t"], difference / se)
    np.testing.assert_allclose(result["df"], df_total)
    np.testing.assert_allclose(result["pvalue"], 2 * stats.t.sf(np.abs(difference / se), df_total))
    half = stats.t.ppf(0.975, df_total) * se
    np.testing.assert_allclose(result["ci_low"], difference - half)
    np.testing.assert_allclose(result["ci_high"], difference + half)
    assert result.loc[0, "pvalue"] < 0.01
    # a feature without a variance (too few replicates) keeps NaN statistics
    values["sparse"] = [1.0, np.nan, np.nan, np.nan, 0.0, 0.1, 0.2, 0.3]
    result = moderate(compare_groups(values, design, contrast=CONTRAST)).set_index("feature")
    assert result.loc["sparse", ["t", "pvalue", "ci_low"]].isna().all()


def test_moderated_intervals_cover_the_true_difference():
    """Variances from a prior, 4 vs 4 donors: the 95 % intervals cover the truth about 95 %."""
    rng = np.random.default_rng(5)
    design = _design()
    n_features = 400
    sigma2 = 4 * 0.3 / rng.chisquare(4, n_features)
    truth = rng.normal(0, 1, n_features)
    noise = rng.normal(size=(8, n_features)) * np.sqrt(sigma2)
    y = noise + np.outer(np.r_[np.ones(4), np.zeros(4)], truth)
    result = moderate(
        compare_groups(pd.DataFrame(y, index=design.index), design, contrast=CONTRAST)
    )
    covered = (result["ci_low"] <= truth) & (truth <= result["ci_high"])
    assert 0.92 <= covered.mean() <= 0.98
    assert result["df_prior"].iloc[0] == pytest.approx(4, rel=0.5)


def test_welch_t_is_scipys_unequal_variance_test():
    rng = np.random.default_rng(11)
    for n_a, n_b in ((4, 2), (3, 5), (2, 2)):
        a, b = rng.normal(1, 1, n_a), rng.normal(0, 3, n_b)
        expected = stats.ttest_ind(a, b, equal_var=False)
        fit = welch_t(a, b)
        assert fit["difference"] == pytest.approx(a.mean() - b.mean())
        assert fit["t"] == pytest.approx(expected.statistic)
        assert fit["pvalue"] == pytest.approx(expected.pvalue)
        assert fit["df"] == pytest.approx(expected.df)
        assert (fit["ci_low"], fit["ci_high"]) == pytest.approx(
            tuple(expected.confidence_interval(0.95))
        )
    # one value in a group: no variance, no test
    assert np.isnan(welch_t(np.array([1.0]), np.array([0.0, 1.0]))["pvalue"])


def test_ols_condition_is_statsmodels_ols():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(12)
    x = np.column_stack([np.ones(9), np.r_[np.ones(5), np.zeros(4)], rng.normal(size=9)])
    y = x @ [1.0, 0.7, -0.4] + rng.normal(0, 0.3, 9)
    fit, expected = ols_condition(y, x), sm.OLS(y, x).fit()
    assert fit["difference"] == pytest.approx(expected.params[1])
    assert fit["se"] == pytest.approx(expected.bse[1])
    assert fit["t"] == pytest.approx(expected.tvalues[1])
    assert fit["pvalue"] == pytest.approx(expected.pvalues[1])
    assert fit["df"] == expected.df_resid
    assert (fit["ci_low"], fit["ci_high"]) == pytest.approx(tuple(expected.conf_int()[1]))
    # no residual df, or a column copied: nothing to estimate
    assert np.isnan(ols_condition(y[:3], x[:3])["pvalue"])
    assert np.isnan(ols_condition(y, np.column_stack([x, x[:, 2]]))["se"])
