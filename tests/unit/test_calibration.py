"""Calibration of the donor-level statistics on the realistic simulator (issue 11, the proof).

Package level, no Snakemake, no annotation: the simulator's true cell types are the labels, so
these tests isolate the statistics. Three claims:

1. Null calibration: with no condition effect and the technical factors (ambient share, stress)
   drawn independently of condition, each test type (pseudobulk DESeq2, propeller composition,
   signature tests, CAMERA enrichment) gives at most 5 % of raw p-values below 0.05 per cell
   type, within a stated binomial tolerance.
2. Planted stress: stress in every donor of the condition (``stress="with_condition"``) raises
   the signature tests' stress/processing control (``control_flag``) in every cell type it
   touches; stress balanced between conditions rarely raises it.
3. 95 % intervals cover the planted effect, on the scale each method reports, in >= 90 % of
   cases.

Tolerance: a share of p < 0.05 is accepted up to the upper 99 % point of Binomial(n, 0.05) / n
(n = p-values pooled over the replicate studies), i.e. a correctly calibrated test fails a
given cell type with probability <= 1 %. Tests of one study are positively correlated (genes or
signatures share donor effects: a donor with a high soup share moves many genes together), which
widens the true spread of the share beyond the binomial one; the binomial bound is therefore
*tighter* than the real sampling spread, so a pass is conservative evidence, and the seeds are
fixed so the outcome is deterministic. The spread over studies is reported in the assertion
messages (per-study shares).
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cordatlas.compare.composition import composition_tests, replicate_proportions
from cordatlas.compare.deseq2 import pseudobulk_de
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.compare.enrichment import Pseudobulks, enrich_by_cell_type
from cordatlas.compare.pseudobulk import aggregate_pseudobulk
from cordatlas.compare.signature_tests import DEFAULT_CONTROL, signature_tests
from cordatlas.compare.signatures import score_signatures, summarise_by_replicate
from cordatlas.demo.biology import REALISTIC_DIRICHLET_CONCENTRATION
from cordatlas.demo.simulate import simulate_study
from cordatlas.genesets.library import gene_lists, load_library
from cordatlas.params import default_params

from .simulated import healthy_cells

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "config" / "signatures.yaml"
PARAMS = default_params()
CONTRAST = PARAMS.contrast  # cord_blood vs adult
#: 400 barcodes per sample leave 5-30 cells of the rarest types per donor; a donor mean or
#: pseudobulk over 5 cells is accepted here (the workflow default is 10).
COMPARISON = dataclasses.replace(PARAMS.comparison, min_cells_per_replicate=5)
FLAG_P = PARAMS.signatures.control_flag_pvalue
FLAG_DIFF = PARAMS.signatures.control_flag_difference

#: 6 donors a side: enough for every test to have residual df and power, small enough to run.
N_PER_GROUP = 6
N_CELLS = 400
#: the realistic simulator's minimum is 446 genes (its 386 named genes plus fillers)
N_GENES = 600
#: studies analysed with every test (DESeq2 is the slow step: about 1.5 s per cell type)
FULL_NULL_SEEDS = (101, 102, 103)
#: extra null studies for the cheap donor-level tests (composition, signatures)
LIGHT_NULL_SEEDS = tuple(range(104, 124))
#: studies with planted effects, for interval coverage
EFFECT_SEEDS = tuple(range(201, 221))
#: DESeq2 interval coverage: two studies, abundant cell types (time) outside the simulator's
#: naive-memory continuum (see test_deseq2_wald_ci_covers_the_planted_log2fc)
DE_EFFECT_SEEDS = (201, 202)
DE_EFFECT_TYPES = ("CD14_monocyte", "CD16_monocyte", "NK_CD56dim", "B_naive")
ALPHA = 0.05
LEVEL = 0.99


def _sheet() -> pd.DataFrame:
    cord = [f"CB{i}" for i in range(1, N_PER_GROUP + 1)]
    adult = [f"AD{i}" for i in range(1, N_PER_GROUP + 1)]
    return pd.DataFrame(
        {
            "sample": cord + adult,
            "donor": cord + adult,
            "condition": [CONTRAST.condition] * N_PER_GROUP + [CONTRAST.reference] * N_PER_GROUP,
        }
    )


@cache
def _study(seed: int, *, condition_effect: bool, stress: str = "independent"):
    return simulate_study(
        _sheet(),
        n_cells_per_sample=N_CELLS,
        n_genes=N_GENES,
        seed=seed,
        condition_effect=condition_effect,
        realism="realistic",
        stress=stress,
    )


def _cells(study) -> ad.AnnData:
    """Healthy singlets with their true cell type, log-normalised X, counts in layers."""
    return healthy_cells(study.adata)


@cache
def _library() -> dict:
    return load_library(LIBRARY)


def _composition(adata_obs: pd.DataFrame) -> pd.DataFrame:
    proportions = replicate_proportions(adata_obs, COMPARISON)
    design = replicate_table(adata_obs, replicate_key=COMPARISON.replicate_key, columns=())
    return composition_tests(proportions, design, COMPARISON, CONTRAST)


def _signatures(adata: ad.AnnData) -> pd.DataFrame:
    scores, _ = score_signatures(adata, _library(), seed=0, potency=False)
    summary = summarise_by_replicate(scores, adata.obs, COMPARISON)
    design = replicate_table(adata.obs, replicate_key=COMPARISON.replicate_key, columns=())
    return signature_tests(
        summary,
        design,
        _library(),
        COMPARISON,
        CONTRAST,
        control_flag_pvalue=FLAG_P,
        control_flag_difference=FLAG_DIFF,
    )


def _testable_types(pseudobulk: ad.AnnData) -> list[str]:
    """Cell types with at least the minimum usable pseudobulks in both groups."""
    obs = pseudobulk.obs[pseudobulk.obs["n_cells"] >= COMPARISON.min_cells_per_replicate]
    counts = obs.groupby(["cell_type", "condition"], observed=True).size().unstack(fill_value=0)
    counts = counts.reindex(columns=list(CONTRAST.as_tuple()), fill_value=0)
    keep = (counts >= COMPARISON.min_replicates_per_group).all(axis=1)
    return [str(t) for t in counts.index[keep]]


def _de_and_enrichment(
    adata: ad.AnnData, cell_types: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    pseudobulk = aggregate_pseudobulk(adata, COMPARISON)
    types = _testable_types(pseudobulk) if cell_types is None else list(cell_types)
    tables, pseudobulks = [], {}
    for cell_type in types:
        table, _ = pseudobulk_de(pseudobulk, COMPARISON, CONTRAST, cell_type=cell_type)
        if table.empty:
            continue
        tables.append(table)
        # the pseudobulks the DE test used, as test_pseudobulk_de writes them for enrich_de
        used = pseudobulk[
            (pseudobulk.obs["cell_type"] == cell_type)
            & (pseudobulk.obs["n_cells"] >= COMPARISON.min_cells_per_replicate)
        ]
        pseudobulks[cell_type] = Pseudobulks(counts=used.to_df().T, obs=used.obs.astype(str))
    de = pd.concat(tables, ignore_index=True)
    enrichment = enrich_by_cell_type(
        de, gene_lists(_library()), PARAMS.enrichment, CONTRAST, pseudobulks=pseudobulks
    )
    return de, enrichment


# ============================================================================================
# Replicate studies (module fixtures: each simulated and analysed once)
# ============================================================================================
@pytest.fixture(scope="module")
def full_null() -> list[dict[str, pd.DataFrame]]:
    """Null studies with every test: DESeq2, CAMERA, composition, signatures."""
    runs = []
    for seed in FULL_NULL_SEEDS:
        study = _study(seed, condition_effect=False)
        adata = _cells(study)
        de, enrichment = _de_and_enrichment(adata)
        runs.append(
            {
                "de": de.assign(study=seed),
                "enrichment": enrichment.assign(study=seed),
                "composition": _composition(adata.obs).assign(study=seed),
                "signatures": _signatures(adata).assign(study=seed),
            }
        )
    return runs


@pytest.fixture(scope="module")
def light_null(full_null) -> dict[str, pd.DataFrame]:
    """Composition and signature tests pooled over all null studies."""
    composition = [run["composition"] for run in full_null]
    signatures = [run["signatures"] for run in full_null]
    for seed in LIGHT_NULL_SEEDS:
        adata = _cells(_study(seed, condition_effect=False))
        composition.append(_composition(adata.obs).assign(study=seed))
        signatures.append(_signatures(adata).assign(study=seed))
    return {
        "composition": pd.concat(composition, ignore_index=True),
        "signatures": pd.concat(signatures, ignore_index=True),
    }


def _max_share(n: int) -> float:
    """Upper 99 % point of the share of p < 0.05 among n p-values of a calibrated test."""
    return float(stats.binom.ppf(LEVEL, n, ALPHA)) / n


def _check_null_shares(table: pd.DataFrame, *, what: str) -> pd.DataFrame:
    """Per cell type: n p-values, share below 0.05, its bound, per-study shares; asserts."""
    tested = table[pd.to_numeric(table["pvalue"], errors="coerce").notna()].copy()
    tested["low"] = tested["pvalue"].astype(float) < ALPHA
    rows = []
    for cell_type, group in tested.groupby("cell_type", sort=True):
        n = len(group)
        per_study = group.groupby("study")["low"].mean().round(3).tolist()
        rows.append(
            {
                "cell_type": cell_type,
                "n": n,
                "share": group["low"].mean(),
                "bound": _max_share(n),
                "per_study": per_study,
            }
        )
    summary = pd.DataFrame(rows)
    bad = summary[summary["share"] > summary["bound"]]
    assert bad.empty, f"{what}: share of raw p < 0.05 above the bound\n{bad.to_string()}"
    return summary


# ============================================================================================
# 1. Null calibration, per test type and cell type
# ============================================================================================
def _null_de(full_null) -> pd.DataFrame:
    return pd.concat([run["de"] for run in full_null], ignore_index=True)


@pytest.mark.xfail(
    strict=True,
    reason="measured (seeds 101-103): NK_CD56dim 6.6 % of 1,146 raw p < 0.05 (bound 6.5 %), "
    "CD8_naive 6.5 % and HSC_MPP 6.3 % just under theirs; all genes 5.4 % of 16,806. "
    "Cause: the ambient soup. Its share and globin content are drawn per sample, "
    "independent of condition, but with 6 samples a side one study in three (seed 103) "
    "drew more soup haemoglobin in one group: 57 % of that study's haemoglobin tests (all "
    "cell types) have p < 0.05, 24 % over the 3 studies. That is a real per-sample "
    "difference, not a DESeq2 error; the contamination flag marks 58 of the 60 such globin "
    "hits (test below).",
)
def test_deseq2_null_share_per_cell_type_all_genes(full_null):
    _check_null_shares(_null_de(full_null), what="pseudobulk DESeq2, all genes")


def test_deseq2_null_share_per_cell_type(full_null):
    # Genes whose signal the ambient RNA or another cell type can explain carry
    # contamination_flag (compare.contamination, issue 11 point 4) and are read as such in the
    # report; the calibration claim is on the others.
    de = _null_de(full_null)
    unflagged = de[~de["contamination_flag"].fillna(False).astype(bool)]
    summary = _check_null_shares(unflagged, what="pseudobulk DESeq2, genes not flagged")
    # every abundant type was tested in every study (the test saw the data)
    assert len(summary) >= 15
    assert (summary["n"] >= 3 * 300).sum() >= 8
    pooled = (unflagged["pvalue"].dropna() < ALPHA).mean()
    assert pooled <= ALPHA, f"DESeq2 pooled share {pooled:.4f}"


def test_camera_null_share_per_cell_type(full_null):
    enrichment = pd.concat([run["enrichment"] for run in full_null], ignore_index=True)
    summary = _check_null_shares(enrichment, what="CAMERA enrichment")
    assert summary["n"].sum() >= 100


def test_composition_null_share_per_cell_type(light_null):
    summary = _check_null_shares(light_null["composition"], what="composition (propeller)")
    n_studies = len(FULL_NULL_SEEDS) + len(LIGHT_NULL_SEEDS)
    assert (summary["n"] == n_studies).sum() >= 15
    pooled = (light_null["composition"]["pvalue"].dropna() < ALPHA).mean()
    assert pooled <= _max_share(int(light_null["composition"]["pvalue"].notna().sum()))


def test_signature_tests_null_share_per_cell_type(light_null):
    summary = _check_null_shares(light_null["signatures"], what="signature tests")
    assert len(summary) >= 15


# ============================================================================================
# 2. Planted stress and the stress/processing control
# ============================================================================================
def test_stress_with_condition_raises_the_control_in_every_touched_cell_type():
    study = _study(301, condition_effect=False, stress="with_condition")
    truth = study.truth_cells[study.truth_cells["artefact"] == "none"]
    stressed = truth.groupby("cell_type")["stress_log2fc"].apply(lambda s: (s > 0).any())
    touched = set(stressed.index[stressed])
    # stress is planted in every donor of the condition: every cell type is touched
    assert (
        study.truth_samples.loc[study.truth_samples["stressed"], "condition"]
        .eq(CONTRAST.condition)
        .all()
    )
    results = _signatures(_cells(study))
    flag = results.groupby("cell_type")["control_flag"].first()
    tested = set(flag.index) & touched
    assert len(tested) >= 15
    missed = sorted(t for t in tested if not bool(flag[t]))
    assert not missed, f"control_flag not raised in {missed}"
    # the control's own difference points the way the stress was planted
    control = results[results["signature"] == DEFAULT_CONTROL]
    assert (control["difference"].dropna() > 0).all()


def test_balanced_stress_rarely_raises_the_control(light_null):
    # Stress in half of each condition's donors (stress="independent") and no condition effect.
    # The flag is a liberal screen: raw p < control_flag_pvalue (0.1) or |difference| >=
    # control_flag_difference (0.5 score units). Its rate over (study, cell type) pairs is held
    # to the upper 99 % binomial point of the p-value rule's nominal 10 %. Measured (23 null
    # studies x 17 types): 13.1 % flagged, nearly all by the difference rule (|difference|
    # >= 0.5 in 12.8 %; the stressed donors' folds, 1-2.5 log2, differ between the groups by
    # chance); the p-value rule alone 0.8 % (balanced stress by design makes the t test of the
    # control conservative).
    signatures = light_null["signatures"]
    per_type = signatures.groupby(["study", "cell_type"])["control_flag"].first().dropna()
    rate = per_type.astype(bool).mean()
    bound = float(stats.binom.ppf(LEVEL, len(per_type), FLAG_P)) / len(per_type)
    assert rate <= bound, (
        f"control_flag raised in {rate:.3f} of {len(per_type)} null (study, cell type) pairs"
    )
    control = signatures[signatures["signature"] == DEFAULT_CONTROL]
    by_pvalue = (control["pvalue"].dropna() < FLAG_P).mean()
    assert by_pvalue <= bound, f"control p < {FLAG_P} in {by_pvalue:.3f} of the null studies"


# ============================================================================================
# 3. 95 % intervals cover the planted effects
# ============================================================================================
def _planted_logit_difference(study, *, n_draws: int = 20000, seed: int = 0) -> pd.Series:
    """The planted composition effect on composition_tests' scale, per cell type.

    propeller's ``difference`` is condition - reference of the mean logit of
    ``(n + 0.5) / (N + 0.5 K)`` (speckle's pseudocount). In the simulator a donor's proportions
    are Dirichlet(c m) around its condition's mean m (``truth_condition_composition``,
    c = ``REALISTIC_DIRICHLET_CONCENTRATION``) and its N healthy singlets are multinomial on
    them, so the planted difference is E_case[logit] - E_ref[logit] over that model; it is
    computed here by Monte Carlo (20,000 donors per condition, SE about 0.01 logit). Neither
    logit(m_case) - logit(m_ref) nor log2(m_case / m_ref) is that quantity: the pseudocount and
    the Dirichlet spread pull rare types' mean logits apart from the logit of their mean.
    """
    means = study.truth_condition_composition.pivot(
        index="cell_type", columns="condition", values="expected_proportion"
    )
    healthy = study.truth_cells[study.truth_cells["artefact"] == "none"]
    n_cells = int(healthy.groupby("sample").size().iloc[0])  # the same in every sample
    rng = np.random.default_rng(seed)
    k = len(means)
    mean_logit = {}
    for condition in CONTRAST.as_tuple():
        props = rng.dirichlet(REALISTIC_DIRICHLET_CONCENTRATION * means[condition], n_draws)
        counts = rng.multinomial(n_cells, props)
        p = (counts + 0.5) / (n_cells + 0.5 * k)
        mean_logit[condition] = np.log(p / (1 - p)).mean(axis=0)
    difference = mean_logit[CONTRAST.condition] - mean_logit[CONTRAST.reference]
    return pd.Series(difference, index=means.index)


def _coverage(low: pd.Series, high: pd.Series, truth: pd.Series) -> tuple[float, int]:
    ok = low.notna() & high.notna() & truth.notna()
    inside = (low[ok] <= truth[ok]) & (truth[ok] <= high[ok])
    return float(inside.mean()), int(ok.sum())


def test_composition_ci_covers_the_planted_effect():
    # The log2_ratio interval is the difference interval back-transformed at the table's
    # reference level (a monotone map), so it covers the planted effect on that scale exactly
    # when the difference interval covers the planted difference: one coverage for both.
    frames = []
    for seed in EFFECT_SEEDS:
        study = _study(seed, condition_effect=True)
        healthy = study.adata.obs[study.adata.obs["artefact"] == "none"]
        table = _composition(healthy).set_index("cell_type")
        table["planted"] = _planted_logit_difference(study)
        frames.append(table)
    table = pd.concat(frames)
    coverage, n = _coverage(table["ci_low"], table["ci_high"], table["planted"])
    assert n >= 300
    assert coverage >= 0.90, f"composition CI coverage {coverage:.3f} of {n}"


def test_signature_difference_ci_covers_zero_under_the_null(light_null):
    # The simulator plants log2 folds on genes, not on the signature score (a mean of
    # log-normalised genes minus a control set's): no planted score difference is on the
    # reported scale except 0, so the null studies are the honest coverage test.
    table = light_null["signatures"]
    zero = pd.Series(0.0, index=table.index)
    coverage, n = _coverage(table["ci_low"], table["ci_high"], zero)
    assert n >= 500
    assert coverage >= 0.90, f"signature difference CI coverage {coverage:.3f} of {n}"


def test_deseq2_wald_ci_covers_the_planted_log2fc():
    """log2FC +- 1.96 lfcSE (the Wald interval of the unshrunk coefficient) covers truth_de.

    truth_de's log2FC is on DESeq2's scale (expected expression at equal library size, the
    pseudobulk's size factors removing library size) for cell types whose cells carry their
    type's expression. It is not for the continuum types (CD4_naive/CD4_memory,
    CD8_naive/CD8_effector): a naive cell's expression is a geometric mix of the naive and
    memory rows at its position t on the axis, so its effective fold is
    (1 - t) lfc_naive + t lfc_memory, attenuated towards the partner's (measured: 73 % coverage
    of 30 planted genes in CD4_naive, the misses all attenuated). Those types are left out.
    """
    z = stats.norm.ppf(0.975)
    frames = []
    for seed in DE_EFFECT_SEEDS:
        study = _study(seed, condition_effect=True)
        de, _ = _de_and_enrichment(_cells(study), cell_types=list(DE_EFFECT_TYPES))
        planted = study.truth_de.set_index(["cell_type", "gene"])["log2FC"]
        de = de.set_index(["cell_type", "gene"])
        de["planted"] = planted.reindex(de.index)
        frames.append(de[de["planted"].notna()])
    de = pd.concat(frames)
    low = de["log2FC"] - z * de["lfcSE"]
    high = de["log2FC"] + z * de["lfcSE"]
    coverage, n = _coverage(low, high, de["planted"])
    assert n >= 80
    assert coverage >= 0.90, f"DESeq2 Wald CI coverage {coverage:.3f} of {n} planted genes"
