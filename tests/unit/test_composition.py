"""Donor-level composition: proportions per donor, planted shifts recovered, null calibrated, edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cordatlas.compare import composition
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.demo.simulate import CELL_TYPES, simulate_study
from cordatlas.errors import UserInputError
from cordatlas.params import Contrast, default_params
from cordatlas.plotting.composition import plot_composition
from cordatlas.vocabulary import DONOR_LEVEL, EVIDENCE_LABELS, NOT_TESTABLE

CORD, ADULT = "cord_blood", "adult"
CONTRAST = Contrast(CORD, ADULT)
COMPARISON = default_params().comparison
#: The largest planted shifts (simulate.COMPOSITION): expected sign of cord vs adult.
LARGEST_SHIFTS = {"CD4_memory": -1, "CD8_effector": -1, "CD4_naive": 1, "erythroid": 1}


def _sheet(n_cord: int = 4, n_adult: int = 4) -> pd.DataFrame:
    samples = [f"CB{i}" for i in range(1, n_cord + 1)] + [f"AD{i}" for i in range(1, n_adult + 1)]
    return pd.DataFrame(
        {
            "sample": samples,
            "donor": samples,
            "condition": [CORD] * n_cord + [ADULT] * n_adult,
            "sex": ["F", "M"] * ((n_cord + n_adult) // 2) + ["F"] * ((n_cord + n_adult) % 2),
        }
    )


def _healthy_obs(seed: int, *, condition_effect: bool = True, **sheet) -> pd.DataFrame:
    study = simulate_study(
        _sheet(**sheet),
        n_cells_per_sample=600,
        n_genes=2000,
        seed=seed,
        condition_effect=condition_effect,
    )
    obs = study.adata.obs
    return obs[obs["artefact"] == "none"].copy()


def _params(**changes):
    """The default comparison parameters with some changed (as a config would)."""
    return dataclasses.replace(COMPARISON, **changes)


def _run(obs: pd.DataFrame, **changes) -> tuple[pd.DataFrame, pd.DataFrame]:
    comparison = _params(**changes)
    proportions = composition.replicate_proportions(obs, comparison)
    design = replicate_table(obs, replicate_key="donor", columns=comparison.covariates)
    tests = composition.composition_tests(proportions, design, comparison, CONTRAST)
    assert tests["evidence"].isin(EVIDENCE_LABELS).all()
    return proportions, tests


def _planted_sign() -> pd.Series:
    study = simulate_study(_sheet(1, 1), n_cells_per_sample=50, n_genes=2000, seed=0)
    table = study.truth_condition_composition.pivot(
        index="cell_type", columns="condition", values="expected_proportion"
    )
    return np.sign(np.log2(table[CORD] / table[ADULT]))


@pytest.fixture(scope="module")
def obs() -> pd.DataFrame:
    return _healthy_obs(0)


@pytest.fixture(scope="module")
def result(obs) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _run(obs)


def test_proportions_cover_every_donor_and_type_and_match_truth(obs, result):
    proportions, _ = result
    assert len(proportions) == 8 * len(CELL_TYPES)
    assert set(proportions.columns) == {
        "donor",
        "condition",
        "cell_type",
        "n_cells",
        "n_total",
        "proportion",
    }
    sums = proportions.groupby("donor")["proportion"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    totals = proportions.groupby("donor")["n_total"].first()
    assert (totals == obs.groupby("donor", observed=True).size().reindex(totals.index)).all()
    # the simulator counts each donor's healthy singlets per type on its own
    study = simulate_study(_sheet(), n_cells_per_sample=600, n_genes=2000, seed=0)
    truth = study.truth_composition.set_index(["donor", "cell_type"])["n_cells"]
    ours = proportions.set_index(["donor", "cell_type"])["n_cells"]
    assert (ours.reindex(truth.index) == truth).all()


def test_excluded_labels_leave_numerator_and_denominator(obs):
    labelled = obs.copy()
    labelled["cell_type"] = labelled["cell_type"].astype(str)
    hidden = labelled.index[labelled["cell_type"] == "B_naive"]
    labelled.loc[hidden, "cell_type"] = "unassigned"
    table = composition.replicate_proportions(labelled, _params(exclude_cell_types=("unassigned",)))
    assert "unassigned" not in set(table["cell_type"])
    assert "B_naive" not in set(table["cell_type"])  # all its cells were relabelled
    n_kept = (labelled["cell_type"] != "unassigned").groupby(labelled["donor"], observed=True).sum()
    totals = table.groupby("donor")["n_total"].first()
    assert (totals == n_kept.reindex(totals.index)).all()
    np.testing.assert_allclose(table.groupby("donor")["proportion"].sum(), 1.0)


def test_planted_shifts_detected_with_right_sign(result):
    _, tests = result
    assert len(tests) == len(CELL_TYPES)
    assert (tests["evidence"] == DONOR_LEVEL).all()
    assert (tests["note"] == "").all()
    assert (tests["presence"] == "both").all()
    by_type = tests.set_index("cell_type")
    for cell_type, sign in LARGEST_SHIFTS.items():
        row = by_type.loc[cell_type]
        assert row["padj"] < 0.05, (cell_type, row["padj"])
        assert np.sign(row["difference"]) == sign
        assert np.sign(row["log2_ratio"]) == sign
    # no detection points the wrong way (seed 0: 9 of 17 types at padj < 0.05)
    planted = _planted_sign()
    significant = tests[tests["padj"] < 0.05]
    assert len(significant) >= 6
    wrong = significant[
        np.sign(significant["difference"]).to_numpy()
        != planted[significant["cell_type"]].to_numpy()
    ]
    assert wrong.empty, wrong


def test_null_study_is_calibrated():
    """No planted shift: over 8 seeds (136 tests) at most 2 at padj < 0.05, p roughly uniform."""
    n_significant, pvalues = [], []
    for seed in range(8):
        _, tests = _run(_healthy_obs(seed, condition_effect=False))
        n_significant.append(int((tests["padj"] < 0.05).sum()))
        pvalues.extend(tests["pvalue"])
    assert max(n_significant) <= 1, n_significant
    assert sum(n_significant) <= 2, n_significant
    pvalues = np.asarray(pvalues)
    assert np.isfinite(pvalues).all()
    assert (pvalues < 0.05).mean() < 0.12
    assert 0.35 < pvalues.mean() < 0.65


def test_one_donor_per_group_is_not_testable():
    proportions, tests = _run(_healthy_obs(3, n_cord=1, n_adult=1))
    assert len(tests) == len(CELL_TYPES)
    assert tests["pvalue"].isna().all() and tests["padj"].isna().all()
    assert tests["t"].isna().all() and tests["se"].isna().all()
    assert (tests["evidence"] == NOT_TESTABLE).all()
    assert (tests["note"] == "fewer than 2 replicates in a group").all()
    # the proportions are still reported
    expected = proportions[proportions["condition"] == CORD].set_index("cell_type")["proportion"]
    np.testing.assert_allclose(
        tests.set_index("cell_type")["mean_proportion_condition"],
        expected.reindex(tests["cell_type"]),
    )


def test_three_vs_one_donor_is_not_testable():
    _, tests = _run(_healthy_obs(4, n_cord=3, n_adult=1))
    assert tests["pvalue"].isna().all()
    assert ((tests["n_condition"] == 3) & (tests["n_reference"] == 1)).all()


def test_type_absent_in_one_condition_is_flagged(obs):
    cut = obs[~((obs["cell_type"] == "HSC_MPP") & (obs["condition"] == ADULT))]
    cut = cut[~((cut["cell_type"] == "CD8_effector") & (cut["condition"] == CORD))]
    _, tests = _run(cut)
    by_type = tests.set_index("cell_type")
    assert by_type.loc["HSC_MPP", "presence"] == f"only in {CORD}"
    assert by_type.loc["CD8_effector", "presence"] == f"only in {ADULT}"
    assert by_type.loc["HSC_MPP", "mean_proportion_reference"] == 0
    # the half-cell pseudocount keeps the back-transformed ratio finite, with the effect's sign
    assert 0 < by_type.loc["HSC_MPP", "log2_ratio"] < np.inf
    assert -np.inf < by_type.loc["CD8_effector", "log2_ratio"] < 0
    assert by_type.loc["HSC_MPP", "difference"] > 0 > by_type.loc["CD8_effector", "difference"]
    assert (by_type.drop(["HSC_MPP", "CD8_effector"])["presence"] == "both").all()
    assert np.isfinite(by_type["pvalue"]).all()


def test_covariates_used_or_dropped_and_asin_transform(obs):
    _, tests = _run(obs, covariates=("sex",), composition_transform="asin")
    assert (tests["covariates"] == "sex").all()
    assert (tests["transform"] == "asin").all()
    # residual df 8 donors - intercept, condition, sex = 5, plus the prior's (capped at 17 x 5)
    np.testing.assert_allclose(tests["df"], np.minimum(5 + tests["df_prior"], 17 * 5))
    assert tests.set_index("cell_type").loc["CD4_memory", "padj"] < 0.05
    aliased = obs.assign(batch=obs["condition"].astype(str))
    _, tests = _run(aliased, covariates=("batch",))
    assert (tests["covariates"] == "").all()
    np.testing.assert_allclose(tests["df"], np.minimum(6 + tests["df_prior"], 17 * 6))


def test_donor_without_kept_cells_is_left_out(obs):
    labelled = obs.copy()
    labelled["cell_type"] = labelled["cell_type"].astype(str)
    labelled.loc[labelled["donor"] == "AD1", "cell_type"] = "unassigned"
    proportions = composition.replicate_proportions(labelled, COMPARISON)
    assert proportions.loc[proportions["donor"] == "AD1", "proportion"].isna().all()
    tests = composition.composition_tests(
        proportions, replicate_table(labelled), COMPARISON, CONTRAST
    )
    assert (tests["n_reference"] == 3).all() and (tests["n_condition"] == 4).all()
    assert tests["pvalue"].notna().all()


def test_user_errors_name_the_problem(obs, result):
    proportions, _ = result
    design = replicate_table(obs)
    tests = composition.composition_tests
    with pytest.raises(UserInputError, match="transform 'probit'"):
        tests(proportions, design, _params(composition_transform="probit"), CONTRAST)
    with pytest.raises(UserInputError, match="newborn"):
        tests(proportions, design, COMPARISON, Contrast("newborn", ADULT))
    with pytest.raises(UserInputError, match="two different conditions"):
        tests(proportions, design, COMPARISON, Contrast(ADULT, ADULT))
    with pytest.raises(UserInputError, match="'AD1'"):
        tests(proportions, design.drop("AD1"), COMPARISON, CONTRAST)
    with pytest.raises(UserInputError, match="sex"):
        tests(proportions, design, _params(covariates=("sex",)), CONTRAST)
    with pytest.raises(UserInputError, match="majority_voting"):
        composition.replicate_proportions(obs, _params(cell_type_key="majority_voting"))
    unlabelled = obs.copy()
    unlabelled["cell_type"] = unlabelled["cell_type"].astype(object)
    unlabelled.iloc[:3, unlabelled.columns.get_loc("cell_type")] = None
    with pytest.raises(UserInputError, match="3 cells have no 'cell_type' label"):
        composition.replicate_proportions(unlabelled, COMPARISON)


def test_composition_figure_normal_and_empty(tmp_path, obs, result):
    proportions, tests = result
    path = tmp_path / "composition.png"
    plot_composition(proportions, tests, path=path, contrast=CONTRAST.as_tuple())
    assert path.stat().st_size > 20_000
    _, untestable = _run(_healthy_obs(3, n_cord=1, n_adult=1))
    path = tmp_path / "untestable.png"
    plot_composition(proportions, untestable, path=path, contrast=CONTRAST.as_tuple())
    assert path.stat().st_size > 20_000
    empty = tmp_path / "empty.png"
    plot_composition(
        proportions.iloc[0:0], tests.iloc[0:0], path=empty, contrast=CONTRAST.as_tuple()
    )
    assert empty.stat().st_size > 1_000


def test_logit_uses_speckles_half_cell_pseudocount():
    # one replicate: 0, 5 and 15 cells of three types; speckle: (tab + 0.5) / rowSums(tab + 0.5)
    n = np.array([0, 5, 15])
    logit = composition.transform_proportions(n, np.full(3, 20), n_types=3, transform="logit")
    pseudo = (n + 0.5) / (20 + 1.5)
    np.testing.assert_allclose(logit, np.log(pseudo / (1 - pseudo)))
    np.testing.assert_allclose(composition.inverse_transform(logit, transform="logit").sum(), 1.0)
    asin = composition.transform_proportions(n, np.full(3, 20), n_types=3, transform="asin")
    np.testing.assert_allclose(asin, np.arcsin(np.sqrt(n / 20)))
    np.testing.assert_allclose(composition.inverse_transform(asin, transform="asin"), n / 20)
    assert np.isnan(composition.transform_proportions([0], [0], n_types=3)).all()


#: Baseline shares of the ten cell types of the Dirichlet-multinomial compositions below.
BASE = np.array([0.30, 0.20, 0.12, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02])


def _dirichlet_study(
    rng: np.random.Generator,
    *,
    n_per_group: int = 4,
    shift: tuple[int, float] | None = None,
    concentration: float = 30.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-donor counts: shares ~ Dirichlet(concentration x base), cells ~ multinomial (800-3000
    per donor); `shift` = (type, factor) multiplies that type's base share in cord donors."""
    donors = [f"CB{i}" for i in range(n_per_group)] + [f"AD{i}" for i in range(n_per_group)]
    conditions = [CORD] * n_per_group + [ADULT] * n_per_group
    rows = []
    for donor, condition in zip(donors, conditions, strict=True):
        base = BASE.copy()
        if shift is not None and condition == CORD:
            base[shift[0]] *= shift[1]
            base /= base.sum()
        total = int(rng.integers(800, 3000))
        counts = rng.multinomial(total, rng.dirichlet(concentration * base))
        rows += [
            {"donor": donor, "condition": condition, "cell_type": f"T{k}", "n_cells": int(x)}
            for k, x in enumerate(counts)
        ]
    proportions = pd.DataFrame(rows)
    proportions["n_total"] = proportions.groupby("donor")["n_cells"].transform("sum")
    proportions["proportion"] = proportions["n_cells"] / proportions["n_total"]
    design = pd.DataFrame({"condition": conditions}, index=pd.Index(donors, name="donor"))
    return proportions, design


@pytest.mark.parametrize("transform", ["logit", "asin"])
def test_null_compositions_are_calibrated_per_cell_type(transform):
    """300 null studies x 10 cell types (4 vs 4 donors, overdispersed): ~5 % of p below 0.05 in
    every cell type, the rarest included (the logit needs the variance trend for that)."""
    rng = np.random.default_rng(11)
    comparison = _params(composition_transform=transform)
    pvalues = []
    for _ in range(300):
        proportions, design = _dirichlet_study(rng)
        tests = composition.composition_tests(proportions, design, comparison, CONTRAST)
        pvalues.append(tests["pvalue"].to_numpy())
        assert (tests["method"] == composition.METHOD).all()
    pvalues = np.array(pvalues)
    assert np.isfinite(pvalues).all()
    assert 0.035 <= (pvalues < 0.05).mean() <= 0.065
    assert ((pvalues < 0.05).mean(axis=0) <= 0.09).all(), (pvalues < 0.05).mean(axis=0)
    assert 0.45 < pvalues.mean() < 0.55


def test_planted_shift_found_with_one_signed_effect_and_its_interval():
    rng = np.random.default_rng(12)
    found = 0
    for _ in range(20):
        proportions, design = _dirichlet_study(rng, shift=(3, 0.4), concentration=300.0)
        tests = composition.composition_tests(proportions, design, COMPARISON, CONTRAST)
        row = tests.set_index("cell_type").loc["T3"]
        found += bool(row["padj"] < 0.05)
        assert row["difference"] < 0 and row["log2_ratio"] < 0
        # one effect: the back-transformed ratio has the difference's sign, inside its interval
        tested = tests[tests["pvalue"].notna()]
        assert (np.sign(tested["log2_ratio"]) == np.sign(tested["difference"])).all()
        assert (tested["ci_low"] <= tested["difference"]).all()
        assert (tested["difference"] <= tested["ci_high"]).all()
        assert (tested["log2_ratio_ci_low"] <= tested["log2_ratio"]).all()
        assert (tested["log2_ratio"] <= tested["log2_ratio_ci_high"]).all()
        assert not tested["low_power"].any()
    assert found >= 16, found


def test_effect_sign_agrees_when_the_mean_proportions_disagree():
    # reference: one donor with a large share, three with a small one; cord: four moderate
    # shares. The plain mean proportion is higher in the reference, the mean logit lower.
    cells = {"CB0": 60, "CB1": 55, "CB2": 65, "CB3": 58, "AD0": 400, "AD1": 10, "AD2": 12, "AD3": 9}
    rows = []
    for donor, n in cells.items():
        condition = CORD if donor.startswith("CB") else ADULT
        rows += [
            {"donor": donor, "condition": condition, "cell_type": "rare", "n_cells": n},
            {"donor": donor, "condition": condition, "cell_type": "other", "n_cells": 1000 - n},
        ]
    proportions = pd.DataFrame(rows).assign(n_total=1000)
    proportions["proportion"] = proportions["n_cells"] / 1000
    design = pd.DataFrame(
        {"condition": [CORD] * 4 + [ADULT] * 4}, index=pd.Index(list(cells), name="donor")
    )
    row = composition.composition_tests(proportions, design, COMPARISON, CONTRAST)
    row = row.set_index("cell_type").loc["rare"]
    assert row["mean_proportion_condition"] < row["mean_proportion_reference"]
    assert row["difference"] > 0 and row["log2_ratio"] > 0
    mean_logit = np.log(np.array([60.5, 55.5, 65.5, 58.5]) / np.array([940.5, 945.5, 935.5, 942.5]))
    ref_logit = np.log(np.array([400.5, 10.5, 12.5, 9.5]) / np.array([600.5, 990.5, 988.5, 991.5]))
    assert row["difference"] == pytest.approx(mean_logit.mean() - ref_logit.mean())
    back = 1 / (1 + np.exp(-np.array([mean_logit.mean(), ref_logit.mean()])))
    assert row["log2_ratio"] == pytest.approx(np.log2(back[0] / back[1]))


def test_two_or_three_donors_a_side_are_marked_low_power():
    rng = np.random.default_rng(13)
    for n, low in ((2, True), (3, True), (4, False)):
        proportions, design = _dirichlet_study(rng, n_per_group=n)
        tests = composition.composition_tests(proportions, design, COMPARISON, CONTRAST)
        assert (tests["low_power"] == low).all(), (n, tests["low_power"].tolist())
    _, untested = _run(_healthy_obs(3, n_cord=1, n_adult=1))
    assert not untested["low_power"].any()  # not tested, so not a low-power result
