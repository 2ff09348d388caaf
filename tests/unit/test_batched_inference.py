"""BatchedInference against PyDESeq2's DefaultInference, function by function and end to end.

The counts are negative binomial draws with a planted condition effect on 8 or 10 donors,
plus the genes that send BatchedInference to PyDESeq2's per-gene fallbacks: a gene with no
counts in one condition (IRLS diverges), Poisson genes (a flat dispersion likelihood) and a
gene with one outlying donor (Cook's refit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydeseq2 import utils
from pydeseq2.dds import DeseqDataSet
from pydeseq2.default_inference import DefaultInference
from pydeseq2.ds import DeseqStats

from cordatlas.compare.batched_inference import FLAT_DISPERSION, BatchedInference

N_GENES = 300


def _counts(n_per_group: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NB counts (donors x genes) with 20% of genes changed 2-4 fold, and the fallback genes."""
    rng = np.random.default_rng(seed)
    n = 2 * n_per_group
    condition = np.repeat(["adult", "cord_blood"], n_per_group)
    sex = np.tile(["female", "male"], n_per_group)
    base = np.exp(rng.normal(4.0, 1.5, N_GENES))
    dispersion = 0.05 + 2.0 / base
    lfc = np.where(
        rng.random(N_GENES) < 0.2, rng.choice([-1, 1], N_GENES) * rng.uniform(1, 2, N_GENES), 0.0
    )
    size_factors = rng.uniform(0.6, 1.6, n)
    mu = size_factors[:, None] * base * 2.0 ** (lfc * (condition == "cord_blood")[:, None])
    mu *= np.where(sex == "male", 1.3, 1.0)[:, None] ** (np.arange(N_GENES) % 5 == 0)
    counts = rng.negative_binomial(1.0 / dispersion, 1.0 / (1.0 + mu * dispersion))
    counts[condition == "adult", 0] = 0  # no counts in one condition: IRLS diverges
    counts[:, 1:4] = rng.poisson(mu[:, 1:4])  # Poisson: a flat dispersion likelihood
    counts[0, 4] = counts[:, 4].max() * 30 + 500  # one outlying donor: Cook's refit
    genes = [f"g{i}" for i in range(N_GENES)]
    donors = [f"d{i}" for i in range(n)]
    metadata = pd.DataFrame(
        {
            "condition": pd.Categorical(condition, categories=["adult", "cord_blood"]),
            "sex": pd.Categorical(sex),
        },
        index=donors,
    )
    return pd.DataFrame(counts, index=donors, columns=genes), metadata


@pytest.fixture(scope="module")
def fitted() -> DeseqDataSet:
    """A DefaultInference fit on 4 vs 4 donors, the state each method is compared from."""
    counts, metadata = _counts(4, seed=1)
    dds = DeseqDataSet(
        counts=counts, metadata=metadata, design="~condition", quiet=True,
        inference=DefaultInference(n_cpus=1),
    )  # fmt: skip
    with np.errstate(all="ignore"):
        dds.deseq2()
    return dds


def _alpha_loss(y, X, mu, alpha, alpha_hat, prior_var) -> float:
    """PyDESeq2's fit_alpha_mle objective (Cox-Reid and prior terms), at one gene."""
    W = mu / (1 + mu * alpha)
    reg = 0.5 * np.linalg.slogdet((X.T * W) @ X)[1]
    if prior_var is not None:
        reg += (np.log(alpha) - np.log(alpha_hat)) ** 2 / (2 * prior_var)
    return float(utils.nb_nll(y, mu, alpha)) + reg


def test_lin_reg_mu_and_wald_test_match(fitted: DeseqDataSet) -> None:
    X = fitted.obsm["design_matrix"].to_numpy(dtype=float)
    sf = fitted.obs["size_factors"].to_numpy()
    y = np.asarray(fitted.X, dtype=float)
    default, batched = DefaultInference(n_cpus=1), BatchedInference(n_cpus=1)
    np.testing.assert_allclose(
        batched.lin_reg_mu(y, sf, X, 0.5), default.lin_reg_mu(y, sf, X, 0.5), rtol=1e-8
    )
    args = dict(
        design_matrix=X, disp=fitted.var["dispersions"].to_numpy(),
        lfc=fitted.varm["LFC"].to_numpy(), mu=fitted.layers["_mu_hat"],
        ridge_factor=np.diag(np.repeat(1e-6, X.shape[1])), contrast=np.array([0.0, 1.0]),
        lfc_null=0.5 * np.log(2),  # as DeseqStats passes it: a scalar, natural log
    )  # fmt: skip
    for mine, theirs in zip(batched.wald_test(**args), default.wald_test(**args), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-8)


@pytest.mark.parametrize("max_beta", [30.0, 6.0], ids=["default-bounds", "diverging"])
def test_irls_matches_and_diverging_genes_fall_back(fitted: DeseqDataSet, max_beta: float) -> None:
    """With max_beta=6 the genes whose coefficients pass 6 (gene 0, no adult counts, among them)
    diverge and go to PyDESeq2's own bounded solver."""
    X = fitted.obsm["design_matrix"].to_numpy(dtype=float)
    args = dict(
        counts=np.asarray(fitted.X, dtype=float), size_factors=fitted.obs["size_factors"].to_numpy(),
        design_matrix=X, disp=fitted.var["dispersions"].to_numpy(), min_mu=0.5, beta_tol=1e-8,
        max_beta=max_beta,
    )  # fmt: skip
    beta, mu, hat, converged = BatchedInference(n_cpus=1).irls(**args)
    beta0, mu0, hat0, converged0 = DefaultInference(n_cpus=1).irls(**args)
    np.testing.assert_array_equal(converged, converged0)
    ok = converged0
    np.testing.assert_allclose(beta[ok], beta0[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mu[:, ok], mu0[:, ok], rtol=1e-5)
    np.testing.assert_allclose(hat[:, ok], hat0[:, ok], rtol=1e-5, atol=1e-8)
    diverged = ~converged0
    assert diverged[0] == (max_beta < 30)
    np.testing.assert_allclose(beta[diverged], beta0[diverged], rtol=1e-8)
    np.testing.assert_allclose(mu[:, diverged], mu0[:, diverged], rtol=1e-8)


@pytest.mark.parametrize("prior", [False, True], ids=["genewise", "MAP"])
def test_alpha_mle_objective_never_worse(fitted: DeseqDataSet, prior: bool) -> None:
    X = fitted.obsm["design_matrix"].to_numpy(dtype=float)
    y = np.asarray(fitted.X, dtype=float)
    mu = fitted.layers["_mu_hat"]
    alpha_hat = (
        fitted.var["fitted_dispersions"] if prior else fitted.var["genewise_dispersions"]
    ).to_numpy()
    prior_var = float(fitted.uns["prior_disp_var"]) if prior else None
    args = dict(
        counts=y, design_matrix=X, mu=mu, alpha_hat=alpha_hat, min_disp=fitted.min_disp,
        max_disp=fitted.max_disp, prior_disp_var=prior_var, cr_reg=True, prior_reg=prior,
    )  # fmt: skip
    mine, _ = BatchedInference(n_cpus=1).alpha_mle(**args)
    theirs, _ = DefaultInference(n_cpus=1).alpha_mle(**args)
    loss = np.array(
        [
            [
                _alpha_loss(y[:, g], X, mu[:, g], a[g], alpha_hat[g], prior_var)
                for g in range(y.shape[1])
            ]
            for a in (mine, theirs)
        ]
    )
    assert (loss[0] <= loss[1] + 1e-6 * np.abs(loss[1]).clip(1)).all()
    resolved = mine > FLAT_DISPERSION
    np.testing.assert_allclose(mine[resolved], theirs[resolved], rtol=1e-3)
    # the Poisson genes' flat likelihoods are PyDESeq2's own per-gene fit
    flat = ~resolved
    assert flat.any() or prior  # the prior lifts the MAP dispersions off the flat region
    np.testing.assert_array_equal(mine[flat], theirs[flat])


def test_shrinkage_objective_never_worse(fitted: DeseqDataSet) -> None:
    stats = DeseqStats(fitted, contrast=["condition", "cord_blood", "adult"], quiet=True)
    stats.summary()
    X = fitted.obsm["design_matrix"].to_numpy(dtype=float)
    y = np.asarray(fitted.X, dtype=float)
    size = 1.0 / fitted.var["dispersions"].to_numpy()
    offset = np.log(fitted.obs["size_factors"].to_numpy())
    args = dict(
        design_matrix=X, counts=y, size=size, offset=offset, prior_no_shrink_scale=15.0,
        prior_scale=0.5, optimizer="L-BFGS-B", shrink_index=1,
    )  # fmt: skip
    beta, inv_hessian, converged = BatchedInference(n_cpus=1).lfc_shrink_nbinom_glm(**args)
    beta0, inv_hessian0, _ = DefaultInference(n_cpus=1).lfc_shrink_nbinom_glm(**args)
    assert converged.all()

    def objective(b: np.ndarray, g: int) -> float:
        return utils.nbinomFn(b, X, y[:, g], size[g], offset, 15.0, 0.5, 1)

    mine = np.array([objective(beta[g], g) for g in range(y.shape[1])])
    theirs = np.array([objective(beta0[g], g) for g in range(y.shape[1])])
    assert (mine <= theirs + 1e-9 * np.abs(theirs).clip(1)).all()
    same = np.abs(beta[:, 1] - beta0[:, 1]) < 1e-3
    assert same.mean() > 0.9
    np.testing.assert_allclose(inv_hessian[same], inv_hessian0[same], rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize(("n_per_group", "design"), [(4, "~condition"), (5, "~sex + condition")])
def test_pipeline_p_values_match(n_per_group: int, design: str) -> None:
    """The whole PyDESeq2 pipeline (Cook's refit included): same p-values, same discoveries."""
    counts, metadata = _counts(n_per_group, seed=n_per_group)
    results = {}
    for name, inference in (
        ("default", DefaultInference(n_cpus=1)),
        ("batched", BatchedInference(n_cpus=1)),
    ):
        dds = DeseqDataSet(
            counts=counts, metadata=metadata, design=design, refit_cooks=True,
            inference=inference, quiet=True,
        )  # fmt: skip
        with np.errstate(all="ignore"):
            dds.deseq2()
        stats = DeseqStats(
            dds, contrast=["condition", "cord_blood", "adult"], inference=inference, quiet=True
        )
        stats.summary()
        results[name] = stats.results_df
    mine, theirs = results["batched"], results["default"]
    tested = theirs["pvalue"].notna()
    np.testing.assert_array_equal(mine["pvalue"].notna(), tested)
    np.testing.assert_allclose(
        mine.loc[tested, "pvalue"], theirs.loc[tested, "pvalue"], rtol=1e-3, atol=1e-12
    )
    np.testing.assert_allclose(
        mine.loc[tested, "log2FoldChange"], theirs.loc[tested, "log2FoldChange"],
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    significant = theirs["padj"] < 0.05
    assert significant.sum() >= 20  # the planted effects are found
    np.testing.assert_array_equal(mine["padj"] < 0.05, significant)
