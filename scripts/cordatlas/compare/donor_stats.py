"""Donor-level statistics shared by every comparison: the replicate table, usable covariates, a linear-model group test, BH."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

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
]


def replicate_table(
    obs: pd.DataFrame,
    *,
    replicate_key: str = "donor",
    condition_key: str = "condition",
    columns: Sequence[str] = (),
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

    Raises
    ------
    UserInputError
        A column is missing, or a replicate has two values of the condition or of a covariate.
    """
    wanted = list(dict.fromkeys([condition_key, *columns]))
    missing = [c for c in [replicate_key, *wanted] if c not in obs.columns]
    if missing:
        raise UserInputError(
            f"column(s) {missing} are not in the data (available: {sorted(map(str, obs.columns))}); "
            "add them to the sample sheet or remove them from config comparison.covariates."
        )
    table = obs[[replicate_key, *wanted]].astype(str).drop_duplicates()
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


def usable_covariates(
    design: pd.DataFrame,
    covariates: Sequence[str],
    *,
    condition_key: str = "condition",
) -> tuple[list[str], dict[str, str]]:
    """Covariates that can enter a model beside condition, and why each other one cannot.

    A covariate is dropped when it has one level among these replicates (nothing to adjust),
    when it is aliased with condition (it would absorb the very difference tested; the design
    check reports the same), or when adding it leaves the model without residual degrees of
    freedom or with a rank-deficient design.
    """
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for covariate in covariates:
        values = design[covariate].astype(str)
        if values.nunique() < 2:
            dropped[covariate] = f"one level ({values.iloc[0]!r}) among these replicates"
            continue
        per_level = design.groupby(values, observed=True)[condition_key].nunique()
        if (per_level < 2).all():
            dropped[covariate] = "aliased with condition (no level holds both conditions)"
            continue
        first_condition = str(design[condition_key].iloc[0])
        matrix = _design_matrix(design, condition_key, first_condition, [*kept, covariate])
        rank = np.linalg.matrix_rank(matrix)
        if rank < matrix.shape[1] or matrix.shape[0] - rank < 1:
            dropped[covariate] = "leaves no residual degrees of freedom (too few replicates)"
            continue
        kept.append(covariate)
    return kept, dropped


def _design_matrix(
    design: pd.DataFrame, condition_key: str, condition: str, covariates: Sequence[str]
) -> np.ndarray:
    """Intercept, condition indicator (1 = `condition`), then dummy-coded covariates."""
    blocks = [
        np.ones((len(design), 1)),
        (design[condition_key].astype(str).to_numpy() == condition).astype(float)[:, None],
    ]
    for covariate in covariates:
        dummies = pd.get_dummies(design[covariate].astype(str), drop_first=True, dtype=float)
        blocks.append(dummies.to_numpy())
    return np.hstack(blocks)


def compare_groups(
    values: pd.DataFrame,
    design: pd.DataFrame,
    *,
    contrast: Sequence[str],
    condition_key: str = "condition",
    covariates: Sequence[str] = (),
    min_replicates: int = 2,
) -> pd.DataFrame:
    """Test condition per feature with replicates (donors) as the unit: OLS t-test.

    Each feature (a signature score, a transformed cell-type proportion) is modelled as
    intercept + condition + covariates over the replicates that have a value (NaN = the
    replicate lacks that cell type). The condition coefficient is the adjusted difference
    `condition - reference`; its t statistic has n - p residual degrees of freedom.

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
    min_replicates
        A feature is tested only when both groups have at least this many replicates with a
        value (fewer: no biological replication, difference reported, statistics NaN).

    Returns
    -------
    DataFrame with :data:`COMPARISON_COLUMNS`, one row per feature (in `values` column order).
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
        }
        if min(n_c, n_r) >= max(min_replicates, 1) and n_c + n_r > 2:
            used, left_out = usable_covariates(sub, covariates, condition_key=condition_key)
            for covariate, reason in left_out.items():
                dropped.setdefault((covariate, reason), []).append(str(feature))
            x = _design_matrix(sub, condition_key, condition, used)
            residual_df = len(y) - x.shape[1]
            if residual_df >= 1:
                coef, *_ = np.linalg.lstsq(x, y, rcond=None)
                residuals = y - x @ coef
                sigma2 = float(residuals @ residuals) / residual_df
                cov = sigma2 * np.linalg.pinv(x.T @ x)
                se = float(np.sqrt(max(cov[1, 1], 0.0)))
                row.update(difference=float(coef[1]), se=se, df=float(residual_df))
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
