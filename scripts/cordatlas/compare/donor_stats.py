"""Donor-level statistics shared by every comparison: the replicate table, usable covariates, a linear-model group test, limma's empirical-Bayes moderation, BH (within families)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)

#: Columns of :func:`compare_groups`' result.
COMPARISON_COLUMNS = [
    "feature",
    "n_condition",
    "n_reference",
    "mean_condition",
    "mean_reference",
    "difference",
    "se",
    "t",
    "df",
    "pvalue",
    "covariates",
    "sigma2",
    "stdev_unscaled",
]


def replicate_table(
    obs: pd.DataFrame,
    *,
    replicate_key: str = "donor",
    condition_key: str = "condition",
    columns: Sequence[str] = (),
    numeric: Collection[str] = (),
) -> pd.DataFrame:
    """One row per biological replicate (donor): its condition and the requested metadata.

    Parameters
    ----------
    obs
        Cell- or sample-level table holding `replicate_key`, `condition_key` and `columns`.
    replicate_key
        The unit of replication (config comparison.replicate_key, `donor` by default).
    columns
        Metadata columns to carry (covariates); each must be constant within a replicate.
    numeric
        Those of `columns` declared numeric (config comparison.covariates ``type: numeric``):
        carried as floats and compared as numbers (``34`` and ``34.0`` are one value); the
        others are carried as text.

    Raises
    ------
    UserInputError
        A column is missing, a numeric column holds a value that is not a number, or a
        replicate has two values of the condition or of a covariate.
    """
    wanted = list(dict.fromkeys([condition_key, *columns]))
    missing = [c for c in [replicate_key, *wanted] if c not in obs.columns]
    if missing:
        raise UserInputError(
            f"column(s) {missing} are not in the data (available: {sorted(map(str, obs.columns))}); "
            "add them to the sample sheet or remove them from config comparison.covariates."
        )
    table = obs[[replicate_key, *wanted]].astype(str)
    for column in wanted:
        if column in numeric and column != condition_key:
            table[column] = numeric_values(
                obs[column], column=column, names=obs[replicate_key].astype(str), what=replicate_key
            )
    table = table.drop_duplicates()
    for column in wanted:
        counts = table.groupby(replicate_key, observed=True)[column].nunique()
        if (counts > 1).any():
            replicate = counts.index[counts > 1][0]
            values = sorted(table.loc[table[replicate_key] == replicate, column].unique())
            raise UserInputError(
                f"{replicate_key} {replicate!r} has several values of {column!r} ({values}); a "
                f"{replicate_key} is one biological replicate, so {column!r} must be the same in "
                f"all its samples. Fix the sample sheet or drop {column!r} from "
                "comparison.covariates."
            )
    table = table.drop_duplicates(replicate_key).set_index(replicate_key)
    table.index = table.index.astype(str)
    table.index.name = replicate_key
    return table.sort_index()


def numeric_values(
    values: pd.Series, *, column: str, names: Sequence[str] | pd.Series | None = None, what: str
) -> np.ndarray:
    """A numeric covariate's values as floats; the first value that is not a number is refused.

    `names` label the rows in the message (default: the index), `what` says what a row is
    (``donor``, ``pseudobulk``).
    """
    labels = list(values.index if names is None else names)
    parsed = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(parsed))
    if bad.size:
        first = bad[0]
        raise UserInputError(
            f"{what} {str(labels[first])!r}: numeric covariate {column!r} has value "
            f"{str(values.iloc[first])!r}, which is not a number ({bad.size} such); fill in a "
            f"number for every sample in the sample sheet or declare {column!r} categorical in "
            "config comparison.covariates."
        )
    return parsed


def usable_covariates(
    design: pd.DataFrame,
    covariates: Sequence[str],
    *,
    condition_key: str = "condition",
    numeric: Collection[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """Covariates that can enter a model beside condition, and why each other one cannot.

    A covariate is dropped when it has one level (one value) among these replicates (nothing
    to adjust), when it is aliased with condition (it would absorb the very difference tested;
    the design check reports the same): for a categorical covariate no level holds both
    conditions, for a numeric one (`numeric`) its values are a linear function of condition
    (|correlation| with the condition indicator ~ 1), or when adding it leaves the model
    without residual degrees of freedom or with a rank-deficient design (n - rank < 1). A
    numeric covariate costs one degree of freedom however many distinct values it has.
    """
    kept: list[str] = []
    dropped: dict[str, str] = {}
    first_condition = str(design[condition_key].iloc[0])
    is_first = (design[condition_key].astype(str).to_numpy() == first_condition).astype(float)
    for covariate in covariates:
        if covariate in numeric:
            values = numeric_values(design[covariate], column=covariate, what="replicate")
            if np.unique(values).size < 2:
                dropped[covariate] = f"one value ({values[0]:g}) among these replicates"
                continue
            if _aliased_numeric(values, is_first):
                dropped[covariate] = (
                    "aliased with condition (its values are a linear function of condition, "
                    "|correlation| = 1)"
                )
                continue
        else:
            text = design[covariate].astype(str)
            if text.nunique() < 2:
                dropped[covariate] = f"one level ({text.iloc[0]!r}) among these replicates"
                continue
            per_level = design.groupby(text, observed=True)[condition_key].nunique()
            if (per_level < 2).all():
                dropped[covariate] = "aliased with condition (no level holds both conditions)"
                continue
        matrix = _design_matrix(
            design, condition_key, first_condition, [*kept, covariate], numeric=numeric
        )
        rank = np.linalg.matrix_rank(matrix)
        if rank < matrix.shape[1] or matrix.shape[0] - rank < 1:
            dropped[covariate] = "leaves no residual degrees of freedom (too few replicates)"
            continue
        kept.append(covariate)
    return kept, dropped


def _aliased_numeric(values: np.ndarray, is_condition: np.ndarray) -> bool:
    """True when `values` lie in the span of intercept + condition (one value per condition)."""
    if np.unique(is_condition).size < 2:
        return False
    centred = values - values.mean()
    indicator = is_condition - is_condition.mean()
    denominator = float(np.sqrt((centred @ centred) * (indicator @ indicator)))
    return denominator > 0 and abs(float(centred @ indicator) / denominator) > 1 - 1e-8


def _design_matrix(
    design: pd.DataFrame,
    condition_key: str,
    condition: str,
    covariates: Sequence[str],
    *,
    numeric: Collection[str] = (),
) -> np.ndarray:
    """Intercept, condition indicator (1 = `condition`), then the covariates.

    A categorical covariate enters as dummies (first level the baseline), a numeric one as a
    single column centred on its mean over these replicates (the intercept is then the value
    at the mean; the condition coefficient does not change).
    """
    blocks = [
        np.ones((len(design), 1)),
        (design[condition_key].astype(str).to_numpy() == condition).astype(float)[:, None],
    ]
    for covariate in covariates:
        if covariate in numeric:
            values = numeric_values(design[covariate], column=covariate, what="replicate")
            blocks.append((values - values.mean())[:, None])
            continue
        dummies = pd.get_dummies(design[covariate].astype(str), drop_first=True, dtype=float)
        blocks.append(dummies.to_numpy())
    return np.hstack(blocks)


def design_matrix(
    design: pd.DataFrame,
    condition_key: str,
    condition: str,
    covariates: Sequence[str],
    *,
    numeric: Collection[str] = (),
) -> np.ndarray:
    """The model matrix every donor-level test uses: intercept, condition (1 = `condition`), covariates.

    `numeric`: the covariates declared numeric (one centred column each); the rest are dummies.
    """
    return _design_matrix(design, condition_key, condition, covariates, numeric=numeric)


def compare_groups(
    values: pd.DataFrame,
    design: pd.DataFrame,
    *,
    contrast: Sequence[str],
    condition_key: str = "condition",
    covariates: Sequence[str] = (),
    numeric: Collection[str] = (),
    min_replicates: int = 2,
) -> pd.DataFrame:
    """Test condition per feature with replicates (donors) as the unit: OLS t-test.

    Each feature (a signature score, a transformed cell-type proportion) is modelled as
    intercept + condition + covariates over the replicates that have a value (NaN = the
    replicate lacks that cell type). The condition coefficient is the adjusted difference
    `condition - reference`; its t statistic has n - rank(X) residual degrees of freedom.

    Parameters
    ----------
    values
        Replicates (index) x features; NaN where a replicate has no value.
    design
        Replicates (index) x `condition_key` and `covariates` (see :func:`replicate_table`).
    contrast
        (condition, reference); replicates of other conditions are ignored.
    covariates
        Columns of `design` to adjust for. Per feature, those unusable among the replicates with
        a value (see :func:`usable_covariates`) are left out; the `covariates` column says which
        were used.
    numeric
        Those of `covariates` declared numeric: one centred column each (a slope), never one
        dummy per value; the rest are dummy-coded.
    min_replicates
        A feature is tested only when both groups have at least this many replicates with a
        value (fewer: no biological replication, difference reported, statistics NaN).

    Returns
    -------
    DataFrame with :data:`COMPARISON_COLUMNS`, one row per feature (in `values` column order).
    ``sigma2`` is the residual variance and ``stdev_unscaled`` the square root of the condition
    coefficient's element of (X'X)^-1 (limma's names), so that ``se = stdev_unscaled *
    sqrt(sigma2)``; :func:`moderate` uses both.
    """
    condition, reference = contrast
    design = design.loc[design[condition_key].astype(str).isin([condition, reference])]
    values = values.reindex(design.index)
    rows = []
    dropped: dict[tuple[str, str], list[str]] = {}
    for feature in values.columns:
        column = pd.to_numeric(values[feature], errors="coerce")
        have = column.notna().to_numpy()
        sub = design.loc[have]
        y = column.to_numpy(dtype=float)[have]
        is_condition = sub[condition_key].astype(str).to_numpy() == condition
        n_c, n_r = int(is_condition.sum()), int((~is_condition).sum())
        mean_c = float(y[is_condition].mean()) if n_c else np.nan
        mean_r = float(y[~is_condition].mean()) if n_r else np.nan
        row = {
            "feature": feature,
            "n_condition": n_c,
            "n_reference": n_r,
            "mean_condition": mean_c,
            "mean_reference": mean_r,
            "difference": mean_c - mean_r,
            "se": np.nan,
            "t": np.nan,
            "df": np.nan,
            "pvalue": np.nan,
            "covariates": "",
            "sigma2": np.nan,
            "stdev_unscaled": np.nan,
        }
        if min(n_c, n_r) >= max(min_replicates, 1) and n_c + n_r > 2:
            used, left_out = usable_covariates(
                sub, covariates, condition_key=condition_key, numeric=numeric
            )
            for covariate, reason in left_out.items():
                dropped.setdefault((covariate, reason), []).append(str(feature))
            x = _design_matrix(sub, condition_key, condition, used, numeric=numeric)
            residual_df = len(y) - int(np.linalg.matrix_rank(x))
            if residual_df >= 1:
                coef, *_ = np.linalg.lstsq(x, y, rcond=None)
                residuals = y - x @ coef
                sigma2 = float(residuals @ residuals) / residual_df
                unscaled = float(np.sqrt(max(np.linalg.pinv(x.T @ x)[1, 1], 0.0)))
                se = unscaled * float(np.sqrt(sigma2))
                row.update(difference=float(coef[1]), se=se, df=float(residual_df))
                row.update(sigma2=sigma2, stdev_unscaled=unscaled)
                row["covariates"] = ",".join(used)
                if se > 0:
                    t = float(coef[1]) / se
                    row.update(t=t, pvalue=float(2 * stats.t.sf(abs(t), residual_df)))
                elif float(coef[1]) == 0.0:
                    row.update(t=0.0, pvalue=1.0)
        rows.append(row)
    for (covariate, reason), features in dropped.items():
        log.info(
            "covariate %r left out for %d feature(s) (%s): %s",
            covariate,
            len(features),
            ", ".join(features[:5]) + (" ..." if len(features) > 5 else ""),
            reason,
        )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def bh_adjust(pvalues: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN and is not counted as a test."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * ok.size / np.arange(1, ok.size + 1)
    out[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return out


#: Values of the ``family`` column: the Benjamini-Hochberg family a row's padj is computed in.
PRESPECIFIED, EXPLORATORY = "prespecified", "exploratory"


def adjust_by_family(
    pvalues: Sequence[float] | np.ndarray | pd.Series, prespecified: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Benjamini-Hochberg within two families: the pre-specified hypotheses and the rest.

    A handful of hypotheses the literature states in advance would be diluted by hundreds of
    exploratory tests under one adjustment; each family is adjusted on its own (the ``family``
    of every row says which), and the adjustment over all tests is kept beside it.

    Returns
    -------
    family, padj, padj_all
        :data:`PRESPECIFIED` or :data:`EXPLORATORY` per row; BH within the row's family; BH
        over every test.
    """
    p = np.asarray(pvalues, dtype=float)
    mask = np.asarray(prespecified, dtype=bool)
    family = np.where(mask, PRESPECIFIED, EXPLORATORY).astype(object)
    padj = np.full(p.shape, np.nan)
    for part in (mask, ~mask):
        padj[part] = bh_adjust(p[part])
    return family, padj, bh_adjust(p)


#: Columns :func:`moderate` adds to (or replaces in) a :func:`compare_groups` table.
MODERATED_COLUMNS = ["se", "t", "df", "pvalue", "ci_low", "ci_high", "s2_prior", "df_prior"]


def trigamma_inverse(x: float | np.ndarray) -> np.ndarray:
    """Solve ``trigamma(y) = x`` for y > 0 by Newton's method (limma's ``trigammaInverse``).

    Starts at ``y = 0.5 + 1/x`` and iterates ``y += trigamma(y) (1 - trigamma(y)/x) /
    psigamma(y, 2)``, which converges monotonically from that start (Smyth 2004, Stat Appl Genet
    Mol Biol 3:3, appendix); ``1/sqrt(x)`` for x > 1e7 and ``1/x`` for x < 1e-6 (the asymptotes),
    NaN for x < 0.
    """
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.full(x.shape, np.nan)
    large, small = x > 1e7, (x >= 0) & (x < 1e-6)
    y[large] = 1.0 / np.sqrt(x[large])
    y[small] = 1.0 / np.maximum(x[small], np.finfo(float).tiny)
    solve = (x >= 1e-6) & (x <= 1e7)
    if solve.any():
        target = x[solve]
        current = 0.5 + 1.0 / target
        for _ in range(50):
            tri = special.polygamma(1, current)
            step = tri * (1.0 - tri / target) / special.polygamma(2, current)
            current = current + step
            if np.max(-step / current) < 1e-8:
                break
        y[solve] = current
    return y


def squeeze_var(
    variances: np.ndarray, df: np.ndarray | float, *, covariate: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Empirical-Bayes posterior variances (limma's ``squeezeVar``, not robust).

    The residual variances s_g^2 on d_g degrees of freedom are taken as draws of a scaled
    inverse chi-square prior (s_0^2, d_0); both are estimated by the method of moments on
    ``log s_g^2`` (limma's ``fitFDist``, Smyth 2004, Stat Appl Genet Mol Biol 3:3, section 6.2):
    ``e_g = log s_g^2 - digamma(d_g/2) + log(d_g/2)``; ``trigamma(d_0/2) = var(e) - mean(trigamma(
    d_g/2))`` (d_0 infinite when that is <= 0); ``s_0^2 = exp(mean(e) + digamma(d_0/2) - log(d_0/
    2))``. The posterior is ``(d_g s_g^2 + d_0 s_0^2) / (d_g + d_0)`` (s_0^2 when d_0 is infinite).
    With a `covariate` (limma's ``trend = TRUE``: the feature's mean value) the prior variance
    follows it: ``mean(e)`` is replaced by a least-squares line of e on the covariate and
    ``var(e)`` by the residual mean square on n - 2 df. limma fits a natural spline of up to 4 df
    there; with the 10-20 features of a composition a straight line is what the data can carry.
    Variances that are not finite or have no df are left out of the fit and returned NaN; exact
    zeros are raised to 1e-5 x the median, as limma does.

    Returns
    -------
    (posterior variances, s_0^2 per feature, d_0). With fewer than two usable variances (three
    with a covariate) there is nothing to borrow: the posterior is the variance itself, d_0 = 0
    and s_0^2 NaN.
    """
    s2 = np.asarray(variances, dtype=float)
    d = np.broadcast_to(np.asarray(df, dtype=float), s2.shape)
    ok = np.isfinite(s2) & np.isfinite(d) & (s2 >= 0) & (d > 0)
    basis = np.ones((s2.size, 1))
    if covariate is not None:
        basis = np.column_stack([basis, np.asarray(covariate, dtype=float)])
        ok &= np.isfinite(basis[:, 1])
        if np.unique(basis[ok, 1]).size < 2:
            basis = basis[:, :1]
    post, prior = np.full(s2.shape, np.nan), np.full(s2.shape, np.nan)
    n = int(ok.sum())
    if n < basis.shape[1] + 1:
        post[ok] = s2[ok]
        return post, prior, 0.0
    x, d1 = s2[ok], d[ok]
    median = float(np.median(x))
    x = np.maximum(x, 1e-5 * (median if median > 0 else 1.0))
    e = np.log(x) - special.digamma(d1 / 2) + np.log(d1 / 2)
    coef, *_ = np.linalg.lstsq(basis[ok], e, rcond=None)
    residual = e - basis[ok] @ coef
    spread = float(residual @ residual) / (n - basis.shape[1])
    excess = spread - float(np.mean(special.polygamma(1, d1 / 2)))
    trend = np.where(np.isfinite(basis).all(axis=1), basis @ coef, np.nan)
    if excess > 0:
        d0 = float(2 * trigamma_inverse(excess)[0])
        prior = np.exp(trend + special.digamma(d0 / 2) - np.log(d0 / 2))
        post[ok] = (d1 * s2[ok] + d0 * prior[ok]) / (d1 + d0)
    else:
        d0, prior = np.inf, np.exp(trend)
        post[ok] = prior[ok]
    return post, prior, d0


def moderate(result: pd.DataFrame, *, trend: bool = False, level: float = 0.95) -> pd.DataFrame:
    """limma's moderated t (``eBayes``, Smyth 2004) over the features of a :func:`compare_groups` table.

    The residual variances of all tested features are squeezed together (:func:`squeeze_var`);
    each feature's ``t = difference / (stdev_unscaled * sqrt(s2_post))`` has ``df + d_0``
    degrees of freedom (at most the pooled residual df, as limma caps it), and its two-sided
    p-value and ``level`` confidence interval ``difference +- t_q(df_total) * se`` come from that
    t distribution. Borrowing strength across features matters most with few donors: a feature
    whose few replicates happen to agree closely no longer gets a tiny variance. With `trend`
    the prior variance follows each feature's mean over the replicates (limma-trend; Law et al.
    2014, Genome Biol 15:R29), for values whose variance depends on their level.

    Returns
    -------
    A copy of `result` with :data:`MODERATED_COLUMNS` (``se``, ``t``, ``df``, ``pvalue`` now
    moderated; ``s2_prior`` and ``df_prior`` the fitted prior: d_0 the same on every row, s_0^2
    too unless `trend`). Rows
    without a residual variance keep NaN statistics.
    """
    out = result.copy()
    sigma2 = pd.to_numeric(out["sigma2"], errors="coerce").to_numpy(dtype=float)
    df = pd.to_numeric(out["df"], errors="coerce").to_numpy(dtype=float)
    unscaled = pd.to_numeric(out["stdev_unscaled"], errors="coerce").to_numpy(dtype=float)
    difference = pd.to_numeric(out["difference"], errors="coerce").to_numpy(dtype=float)
    covariate = None
    if trend:
        n_c, n_r = (pd.to_numeric(out[c], errors="coerce") for c in ("n_condition", "n_reference"))
        means = n_c * out["mean_condition"] + n_r * out["mean_reference"]
        covariate = (means / (n_c + n_r)).to_numpy(dtype=float)
    post, s20, d0 = squeeze_var(sigma2, df, covariate=covariate)
    tested = np.isfinite(post)
    df_total = np.minimum(df + d0, np.nansum(np.where(tested, df, 0.0)))
    se = unscaled * np.sqrt(post)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, difference / se, np.where(difference == 0, 0.0, np.nan))
    half = stats.t.ppf(0.5 + level / 2, np.where(tested, df_total, 1.0)) * se
    out["se"] = np.where(tested, se, np.nan)
    out["t"] = np.where(tested, t, np.nan)
    out["df"] = np.where(tested, df_total, np.nan)
    out["pvalue"] = np.where(
        tested, 2 * stats.t.sf(np.abs(t), np.where(tested, df_total, 1.0)), np.nan
    )
    out["ci_low"] = np.where(tested, difference - half, np.nan)
    out["ci_high"] = np.where(tested, difference + half, np.nan)
    out["s2_prior"] = s20
    out["df_prior"] = d0
    return out


#: Keys of :func:`welch_t` and :func:`ols_condition`: the condition effect and its test.
EFFECT_KEYS = ("difference", "se", "df", "t", "pvalue", "ci_low", "ci_high")


def _effect(difference: float, se: float, df: float, level: float) -> dict[str, float]:
    """t statistic, two-sided p-value and `level` CI from an effect, its SE and df."""
    out = dict.fromkeys(EFFECT_KEYS, np.nan)
    out.update(difference=float(difference), se=float(se), df=float(df))
    if not (np.isfinite(se) and np.isfinite(df) and df > 0):
        return out
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    out.update(ci_low=difference - half, ci_high=difference + half)
    if se > 0:
        t = difference / se
        out.update(t=t, pvalue=float(2 * stats.t.sf(abs(t), df)))
    elif difference == 0:
        out.update(t=0.0, pvalue=1.0)
    return out


def welch_t(
    condition: np.ndarray, reference: np.ndarray, *, level: float = 0.95
) -> dict[str, float]:
    """Welch's unequal-variance t test of ``mean(condition) - mean(reference)`` (Welch 1947).

    ``se = sqrt(s_c^2/n_c + s_r^2/n_r)`` on the Welch-Satterthwaite degrees of freedom
    ``(v_c + v_r)^2 / (v_c^2/(n_c - 1) + v_r^2/(n_r - 1))``, ``v = s^2/n``. Returns
    :data:`EFFECT_KEYS` (NaN statistics when a group has fewer than two values).
    """
    a, b = np.asarray(condition, dtype=float), np.asarray(reference, dtype=float)
    difference = float(a.mean() - b.mean()) if a.size and b.size else np.nan
    if min(a.size, b.size) < 2:
        return _effect(difference, np.nan, np.nan, level)
    v_a, v_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(v_a + v_b))
    denominator = v_a**2 / (a.size - 1) + v_b**2 / (b.size - 1)
    df = float((v_a + v_b) ** 2 / denominator) if denominator > 0 else float(a.size + b.size - 2)
    return _effect(difference, se, df, level)


def ols_condition(y: np.ndarray, x: np.ndarray, *, level: float = 0.95) -> dict[str, float]:
    """OLS fit of `y` on the model matrix `x` (column 1 = condition): that coefficient's t test.

    Returns :data:`EFFECT_KEYS`; all NaN when `x` is rank-deficient or leaves no residual
    degrees of freedom (the caller says why).
    """
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    rank = np.linalg.matrix_rank(x) if x.size else 0
    residual_df = len(y) - x.shape[1]
    if rank < x.shape[1] or residual_df < 1:
        return dict.fromkeys(EFFECT_KEYS, np.nan)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residuals = y - x @ coef
    sigma2 = float(residuals @ residuals) / residual_df
    se = float(np.sqrt(max(np.linalg.inv(x.T @ x)[1, 1], 0.0) * sigma2))
    return _effect(float(coef[1]), se, float(residual_df), level)
