"""Gene-set enrichment: CAMERA against a hand computation, calibrated on correlated null sets, rankings for cell-level DE, GMT reading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from cordatlas.compare.donor_stats import bh_adjust, squeeze_var
from cordatlas.compare.enrichment import (
    ENRICHMENT_COLUMNS,
    METHOD_CAMERA,
    METHOD_RANKING,
    RANKING_NOTE,
    Pseudobulks,
    camera,
    enrich_by_cell_type,
    enrich_cell_type,
    log_cpm,
    pseudobulk_paths,
    read_pseudobulks,
)
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import gene_lists, load_gene_sets
from cordatlas.params import Contrast, default_params
from cordatlas.plotting.enrichment import plot_enrichment
from cordatlas.vocabulary import CONFOUNDED, DONOR_LEVEL, EVIDENCE_LABELS, EXPLORATORY

CORD, ADULT = "cord_blood", "adult"
CONTRAST = Contrast(CORD, ADULT)
#: Set-size limits of these tests (the config's default minimum is 3).
LIMITS = dataclasses.replace(default_params().enrichment, min_set_size=5, max_set_size=500)
N_GENES = 1500


def _pseudobulk_study(
    rng: np.random.Generator,
    *,
    n_per_group: int = 4,
    n_sets: int = 20,
    set_size: int = 30,
    factor_sd: float = 0.3,
    shift: float = 0.0,
) -> tuple[Pseudobulks, dict[str, list[str]]]:
    """Null pseudobulks (negative binomial, dispersion 0.05) of one cell type, 4 vs 4 donors.

    Each set's genes share a per-donor factor N(0, factor_sd) on the log scale (co-expression
    between donors, as cell-cycle or stress genes have); `shift` raises set_0's genes in cord
    donors (a planted effect, log scale).
    """
    n = 2 * n_per_group
    is_cord = np.r_[np.ones(n_per_group), np.zeros(n_per_group)]
    log_mu = np.log(rng.lognormal(np.log(20), 1.5, N_GENES))[:, None]
    log_mu = log_mu + rng.normal(0, 0.2, (N_GENES, n))
    genes = [f"G{i:04d}" for i in range(N_GENES)]
    sets = {}
    for k in range(n_sets):
        members = np.arange(k * set_size, (k + 1) * set_size)
        log_mu[members] += rng.normal(0, factor_sd, n)[None, :]
        sets[f"set_{k}"] = [genes[i] for i in members]
    log_mu[:set_size] += shift * is_cord
    counts = rng.poisson(rng.gamma(20.0, np.exp(log_mu) / 20.0))
    names = [f"CB{i}" for i in range(n_per_group)] + [f"AD{i}" for i in range(n_per_group)]
    obs = pd.DataFrame(
        {"condition": [CORD] * n_per_group + [ADULT] * n_per_group, "donor": names},
        index=pd.Index([f"{d}_NK" for d in names], name="pseudobulk"),
    )
    frame = pd.DataFrame(counts, index=pd.Index(genes, name="gene"), columns=obs.index)
    return Pseudobulks(counts=frame, obs=obs), sets


def _de_table(pseudobulks: Pseudobulks, *, cell_type: str = "NK", **columns) -> pd.DataFrame:
    """A pseudobulk DE table of every gene (p-values are only read for being present)."""
    n_cord = int((pseudobulks.obs["condition"] == CORD).sum())
    table = pd.DataFrame(
        {
            "cell_type": cell_type,
            "gene": pseudobulks.counts.index,
            "stat": 0.0,
            "pvalue": 0.5,
            "method": "pseudobulk_deseq2",
            "evidence": DONOR_LEVEL,
            "covariates": "",
            "n_replicates_condition": n_cord,
            "n_replicates_reference": len(pseudobulks.obs) - n_cord,
        }
    )
    return table.assign(**columns)


def _cell_level_de(seed: int = 0, shifts: dict[str, tuple[list[str], float]] | None = None):
    """One cell type's cell-level DE table of N(0, 1) statistics, chosen genes shifted."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i:04d}" for i in range(N_GENES)]
    stat = rng.normal(0.0, 1.0, N_GENES)
    index = {g: i for i, g in enumerate(genes)}
    for members, shift in (shifts or {}).values():
        stat[[index[g] for g in members]] += shift
    return pd.DataFrame(
        {
            "cell_type": "HSC_MPP",
            "gene": genes,
            "stat": stat,
            "pvalue": stats.norm.sf(np.abs(stat)) * 2,
            "method": "cell_level_wilcoxon",
            "evidence": EXPLORATORY,
            "covariates": "",
        }
    )


UP = [f"G{i:04d}" for i in range(0, 30)]
DOWN = [f"G{i:04d}" for i in range(100, 130)]


def test_camera_matches_a_hand_computation():
    """Per gene OLS, squeezed variances, z scores; vif from the residual correlation matrix."""
    rng = np.random.default_rng(0)
    n_genes, n = 40, 6
    y = rng.normal(size=(n_genes, n))
    y[:5] += rng.normal(0, 1.0, n)  # five co-varying genes
    x = np.column_stack([np.ones(n), [1, 1, 1, 0, 0, 0]])
    index = np.arange(5)
    table, z = camera(y, x, {"set": index})
    # by hand: ordinary least squares of each gene
    coef, *_ = np.linalg.lstsq(x, y.T, rcond=None)
    residual = y - (x @ coef).T
    df = n - 2
    s2 = (residual**2).sum(axis=1) / df
    post, _, d0 = squeeze_var(s2, df)
    unscaled = np.sqrt(np.linalg.inv(x.T @ x)[1, 1])
    t = coef[1] / (unscaled * np.sqrt(post))
    df_total = min(df + d0, n_genes * df)
    expected_z = stats.norm.isf(stats.t.sf(t, df_total))
    np.testing.assert_allclose(z, expected_z, rtol=1e-6, atol=1e-9)
    # vif = 1 + (m - 1) x mean off-diagonal correlation of the set's residuals
    r = np.corrcoef(residual[index])
    m = index.size
    rho = (r.sum() - m) / (m * (m - 1))
    assert table.loc["set", "correlation"] == pytest.approx(rho, rel=1e-8)
    inside, outside = expected_z[index], np.delete(expected_z, index)
    pooled = ((m - 1) * inside.var(ddof=1) + (n_genes - m - 1) * outside.var(ddof=1)) / (
        n_genes - 2
    )
    two_sample = (inside.mean() - outside.mean()) / np.sqrt(
        pooled * ((1 + (m - 1) * rho) / m + 1 / (n_genes - m))
    )
    assert table.loc["set", "statistic"] == pytest.approx(two_sample, rel=1e-8)
    assert table.loc["set", "pvalue"] == pytest.approx(2 * stats.t.sf(abs(two_sample), df))
    # a fixed correlation: vif from it, t on genes - 2 df
    fixed, _ = camera(y, x, {"set": index}, inter_gene_correlation=0.05)
    two_sample = (inside.mean() - outside.mean()) / np.sqrt(
        pooled * ((1 + (m - 1) * 0.05) / m + 1 / (n_genes - m))
    )
    assert fixed.loc["set", "statistic"] == pytest.approx(two_sample, rel=1e-8)
    assert fixed.loc["set", "pvalue"] == pytest.approx(2 * stats.t.sf(abs(two_sample), n_genes - 2))


def test_camera_z_scores_keep_extreme_tails_and_sign():
    from cordatlas.compare.enrichment import _t_to_z

    t = np.array([-60.0, -2.0, 0.0, 2.0, 60.0])
    z = _t_to_z(t, 4.0)
    assert np.isfinite(z).all() and (np.sign(z) == np.sign(t)).all()
    assert z[3] == pytest.approx(stats.norm.isf(stats.t.sf(2.0, 4.0)))
    assert z[4] == pytest.approx(-special.ndtri(stats.t.sf(60.0, 4.0)))
    np.testing.assert_allclose(_t_to_z(t, np.inf), t)


def test_log_cpm_is_voom_s():
    counts = np.array([[0, 10], [90, 30]])
    expected = np.log2((counts + 0.5) / (np.array([90, 40]) + 1) * 1e6)
    np.testing.assert_allclose(log_cpm(counts), expected)


def test_correlated_null_sets_are_calibrated_where_the_rank_test_is_not():
    """60 null studies x 20 sets of 30 co-varying genes: the competitive Wilcoxon test on the
    same gene statistics calls about half the sets; CAMERA about 5 %."""
    rng = np.random.default_rng(1)
    camera_p, wilcoxon_p, correlation = [], [], []
    for _ in range(60):
        pseudobulks, sets = _pseudobulk_study(rng)
        de = _de_table(pseudobulks)
        result = enrich_cell_type(de, sets, LIMITS, CONTRAST, pseudobulks=pseudobulks)
        camera_p += result["pvalue"].tolist()
        correlation += result["correlation"].tolist()
        # the earlier test: gene statistics of the set against the rest, genes independent
        x = np.column_stack([np.ones(8), np.r_[np.ones(4), np.zeros(4)]])
        members = {name: np.arange(k * 30, (k + 1) * 30) for k, name in enumerate(sets)}
        _, z = camera(log_cpm(pseudobulks.counts.to_numpy()), x, members)
        for index in members.values():
            inside = np.zeros(z.size, dtype=bool)
            inside[index] = True
            wilcoxon_p.append(stats.mannwhitneyu(z[inside], z[~inside]).pvalue)
    camera_p, wilcoxon_p = np.array(camera_p), np.array(wilcoxon_p)
    assert np.isfinite(camera_p).all()
    assert (wilcoxon_p < 0.05).mean() > 0.3  # anti-conservative: the failure being fixed
    assert (camera_p < 0.05).mean() <= 0.06, (camera_p < 0.05).mean()
    assert (camera_p < 0.01).mean() <= 0.015
    assert np.median(correlation) > 0.1  # the shared factor is seen (noisily, on 6 df)


def test_planted_set_found_in_its_direction():
    rng = np.random.default_rng(2)
    found = 0
    for _ in range(10):
        pseudobulks, sets = _pseudobulk_study(rng, n_sets=5, factor_sd=0.0, shift=0.7)
        result = enrich_cell_type(_de_table(pseudobulks), sets, LIMITS, CONTRAST,
                                  pseudobulks=pseudobulks, n_leading=5)  # fmt: skip
        row = result.set_index("gene_set").loc["set_0"]
        found += bool(row["padj"] < 0.05)
        assert row["direction"] == "up" and row["statistic"] > 0 and row["auc"] > 0.8
        assert len(row["leading_genes"].split(",")) == 5
    assert found >= 9, found
    assert list(result.columns) == ENRICHMENT_COLUMNS
    assert (result["method"] == METHOD_CAMERA).all() and (result["note"] == "").all()
    assert (result["evidence"] == DONOR_LEVEL).all() and (result["cell_type"] == "NK").all()
    assert (result["n_condition"] == 4).all() and not result["low_power"].any()
    # padj is BH over this cell type's sets
    p = result["pvalue"].to_numpy()
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    expected = np.empty_like(p)
    expected[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1)
    np.testing.assert_allclose(result["padj"], expected)


def test_genes_without_a_pvalue_are_not_used():
    rng = np.random.default_rng(3)
    pseudobulks, sets = _pseudobulk_study(rng, n_sets=2)
    de = _de_table(pseudobulks)
    outliers = sets["set_0"][:4]  # e.g. Cook's-distance outliers: no p-value
    de.loc[de["gene"].isin(outliers), "pvalue"] = np.nan
    result = enrich_cell_type(de, sets, LIMITS, CONTRAST, pseudobulks=pseudobulks)
    row = result.set_index("gene_set").loc["set_0"]
    assert row["n_genes"] == 26 and row["n_missing"] == 4
    assert not set(outliers) & set(row["leading_genes"].split(","))
    # the same as leaving those genes out of the data altogether
    kept = Pseudobulks(counts=pseudobulks.counts.drop(index=outliers), obs=pseudobulks.obs)
    alone = enrich_cell_type(de.dropna(subset=["pvalue"]), sets, LIMITS, CONTRAST,
                             pseudobulks=kept)  # fmt: skip
    np.testing.assert_allclose(result["pvalue"], alone["pvalue"])
    # a cell-level ranking leaves them out too
    ranked = _cell_level_de(shifts={"up": (UP, 1.0)})
    ranked.loc[ranked["gene"].isin(UP[:3]), "pvalue"] = np.nan
    row = enrich_cell_type(ranked, {"up": UP}, LIMITS, CONTRAST).iloc[0]
    assert row["n_genes"] == 27 and row["n_missing"] == 3


def test_cell_level_tables_get_a_labelled_ranking_without_pvalues():
    de = _cell_level_de(shifts={"up": (UP, 1.0), "down": (DOWN, -1.0)})
    sets = {"up": UP, "down": DOWN, "tiny": UP[:2]}
    result = enrich_cell_type(de, sets, LIMITS, CONTRAST, n_leading=5).set_index("gene_set")
    assert result[["pvalue", "padj", "statistic", "correlation"]].isna().all().all()
    assert (result["method"] == METHOD_RANKING).all()
    assert (result["evidence"] == EXPLORATORY).all() and not result["low_power"].any()
    assert result.loc["up", "note"] == RANKING_NOTE and "fewer than" in result.loc["tiny", "note"]
    assert result.loc["up", "direction"] == "up" and result.loc["down", "direction"] == "down"
    stat = de.set_index("gene")["stat"]
    pairwise = (stat[UP].to_numpy()[:, None] > stat.drop(UP).to_numpy()[None, :]).mean()
    assert result.loc["up", "auc"] == pytest.approx(pairwise)
    assert result.loc["down", "leading_genes"].split(",") == list(
        stat[DOWN].sort_values().index[:5]
    )


def test_size_limits_missing_genes_and_case_sensitivity():
    rng = np.random.default_rng(4)
    pseudobulks, _ = _pseudobulk_study(rng, n_sets=1)
    sets = {
        "small": ["G0000", "G0001", "G0002", "NOT_A_GENE"],
        "lowercase": [g.lower() for g in UP],
        "large": [f"G{i:04d}" for i in range(600)],
        "fits": UP + ["NOT_A_GENE", "G0000"],
    }
    result = enrich_cell_type(_de_table(pseudobulks), sets, LIMITS, CONTRAST,
                              pseudobulks=pseudobulks).set_index("gene_set")  # fmt: skip
    assert result.loc["small", "n_genes"] == 3 and result.loc["small", "n_missing"] == 1
    assert "fewer than min_size=5" in result.loc["small", "note"]
    assert result.loc["lowercase", "n_genes"] == 0 and result.loc["lowercase", "n_missing"] == 30
    assert "more than max_size=500" in result.loc["large", "note"]
    untested = result.loc[["small", "lowercase", "large"]]
    assert untested[["auc", "pvalue", "padj"]].isna().all().all()
    assert (untested["direction"] == "").all() and (untested["leading_genes"] == "").all()
    assert not untested["low_power"].any()
    assert result.loc["fits", "n_genes"] == 30 and result.loc["fits", "n_missing"] == 1
    assert result.loc["fits", "note"] == "" and np.isfinite(result.loc["fits", "pvalue"])


def test_covariates_of_the_de_test_enter_the_design():
    rng = np.random.default_rng(5)
    pseudobulks, sets = _pseudobulk_study(rng, n_sets=3)
    obs = pseudobulks.obs.assign(sex=["F", "M", "F", "M", "M", "F", "M", "F"])
    pseudobulks = Pseudobulks(counts=pseudobulks.counts, obs=obs)
    result = enrich_cell_type(_de_table(pseudobulks, covariates="sex"), sets, LIMITS, CONTRAST,
                              pseudobulks=pseudobulks)  # fmt: skip
    sex = (obs["sex"] == "M").to_numpy(dtype=float)
    cord = (obs["condition"] == CORD).to_numpy(dtype=float)
    x = np.column_stack([np.ones(8), sex, cord])
    members = {name: np.arange(k * 30, (k + 1) * 30) for k, name in enumerate(sets)}
    table, _ = camera(log_cpm(pseudobulks.counts.to_numpy()), x, members)
    np.testing.assert_allclose(result["pvalue"], table["pvalue"])
    without = enrich_cell_type(_de_table(pseudobulks), sets, LIMITS, CONTRAST,
                               pseudobulks=pseudobulks)  # fmt: skip
    assert not np.allclose(without["pvalue"], result["pvalue"])


def test_two_or_three_donors_a_side_are_low_power():
    rng = np.random.default_rng(6)
    for n, low in ((2, True), (3, True), (4, False)):
        pseudobulks, sets = _pseudobulk_study(rng, n_per_group=n, n_sets=2)
        result = enrich_cell_type(_de_table(pseudobulks), sets, LIMITS, CONTRAST,
                                  pseudobulks=pseudobulks)  # fmt: skip
        assert (result["low_power"] == low).all(), n
        assert result["pvalue"].notna().all()


def test_each_cell_type_on_its_own_and_confounded_labels_carried():
    rng = np.random.default_rng(7)
    pseudobulks, sets = _pseudobulk_study(rng, n_sets=3, factor_sd=0.0, shift=1.0)
    de = pd.concat(
        [_de_table(pseudobulks, evidence=CONFOUNDED), _cell_level_de(seed=8)], ignore_index=True
    )
    result = enrich_by_cell_type(de, sets, LIMITS, CONTRAST, pseudobulks={"NK": pseudobulks})
    assert result["cell_type"].tolist() == ["NK"] * 3 + ["HSC_MPP"] * 3
    assert result["evidence"].isin(EVIDENCE_LABELS).all()
    nk = result[result["cell_type"] == "NK"]
    assert (nk["evidence"] == CONFOUNDED).all() and (nk["method"] == METHOD_CAMERA).all()
    alone = enrich_cell_type(de[de["cell_type"] == "NK"], sets, LIMITS, CONTRAST,
                             pseudobulks=pseudobulks)  # fmt: skip
    np.testing.assert_allclose(nk["padj"], alone["padj"])
    assert result.loc[result["cell_type"] == "HSC_MPP", "pvalue"].isna().all()
    # pre-specified sets (the library's expectations in this cell type) are their own family
    first = next(iter(sets))
    families = enrich_by_cell_type(de, sets, LIMITS, CONTRAST, pseudobulks={"NK": pseudobulks},
                                   prespecified={"NK": {first}})  # fmt: skip
    nk_f = families[families["cell_type"] == "NK"].set_index("gene_set")
    assert (
        nk_f.at[first, "family"] == "prespecified"
        and nk_f.at[first, "padj"] == nk_f.at[first, "pvalue"]
    )
    rest = nk_f.drop(index=first)
    assert (rest["family"] == "exploratory").all()
    np.testing.assert_allclose(rest["padj"], bh_adjust(rest["pvalue"].to_numpy()))
    np.testing.assert_allclose(nk_f["padj_all"], nk.set_index("gene_set")["padj"])
    assert (families.loc[families["cell_type"] == "HSC_MPP", "family"] == "exploratory").all()
    empty = enrich_by_cell_type(de.iloc[0:0], sets, LIMITS, CONTRAST, pseudobulks={})
    assert empty.empty and list(empty.columns) == ENRICHMENT_COLUMNS
    assert enrich_cell_type(de[de["cell_type"] == "HSC_MPP"], {}, LIMITS, CONTRAST).empty


def test_bad_inputs_raise_with_the_cell_type_and_the_fix():
    rng = np.random.default_rng(9)
    pseudobulks, sets = _pseudobulk_study(rng, n_sets=1)
    de = _de_table(pseudobulks)
    with pytest.raises(UserInputError, match="'NK' is a pseudobulk test but its pseudobulk"):
        enrich_cell_type(de, sets, LIMITS, CONTRAST)
    with pytest.raises(UserInputError, match="wald"):
        enrich_cell_type(de, sets, LIMITS, CONTRAST, rank_by="wald", pseudobulks=pseudobulks)
    with pytest.raises(UserInputError, match="several cell types"):
        enrich_cell_type(pd.concat([de, de.assign(cell_type="B")]), sets, LIMITS, CONTRAST)
    with pytest.raises(UserInputError, match="'G0000' appears more than once"):
        enrich_cell_type(pd.concat([de, de.iloc[:1]]), sets, LIMITS, CONTRAST)
    with pytest.raises(UserInputError, match="mixes evidence labels"):
        mixed = de.assign(evidence=np.where(np.arange(len(de)) < 10, EXPLORATORY, DONOR_LEVEL))
        enrich_cell_type(mixed, sets, LIMITS, CONTRAST)
    with pytest.raises(UserInputError, match="min_size"):
        bad = dataclasses.replace(LIMITS, min_set_size=10, max_set_size=5)
        enrich_cell_type(de, sets, bad, CONTRAST, pseudobulks=pseudobulks)
    fewer = Pseudobulks(counts=pseudobulks.counts.iloc[:-1], obs=pseudobulks.obs)
    with pytest.raises(UserInputError, match="has no pseudobulk counts"):
        enrich_cell_type(de, sets, LIMITS, CONTRAST, pseudobulks=fewer)
    with pytest.raises(UserInputError, match="'sex'"):
        enrich_cell_type(de.assign(covariates="sex"), sets, LIMITS, CONTRAST,
                         pseudobulks=pseudobulks)  # fmt: skip


def test_pseudobulks_are_read_from_beside_their_de_table(tmp_path):
    rng = np.random.default_rng(10)
    pseudobulks, sets = _pseudobulk_study(rng, n_sets=2)
    folder = tmp_path / "pseudobulk"
    (folder / "counts").mkdir(parents=True)
    table = folder / "NK_CD56dim.tsv"
    _de_table(pseudobulks, cell_type="NK CD56dim").to_csv(table, sep="\t", index=False)
    counts_path, obs_path = pseudobulk_paths(table)
    assert counts_path == folder / "counts" / "NK_CD56dim_counts.tsv.gz"
    pseudobulks.counts.to_csv(counts_path, sep="\t")
    pseudobulks.obs.to_csv(obs_path, sep="\t")
    cell_level = tmp_path / "cell_level" / "HSC_MPP.tsv"
    cell_level.parent.mkdir()
    _cell_level_de().to_csv(cell_level, sep="\t", index=False)
    found = read_pseudobulks([table, cell_level])
    assert list(found) == ["NK CD56dim"]
    pd.testing.assert_frame_equal(found["NK CD56dim"].counts, pseudobulks.counts, check_names=False)
    assert found["NK CD56dim"].obs["condition"].tolist() == pseudobulks.obs["condition"].tolist()
    obs_path.unlink()
    with pytest.raises(UserInputError, match="rerun test_pseudobulk_de"):
        read_pseudobulks([table])


def test_gmt_sets_reach_the_enrichment(tmp_path):
    """User GMT files are read once, by the signature library loader, for scoring and enrichment."""

    def read_gmt(path):
        return gene_lists(load_gene_sets(path))

    path = tmp_path / "sets.gmt"
    path.write_text(
        "HALLMARK_A\thttp://example.org\tCD3E\tCD3D\tCD3E\t\n\nHALLMARK_B\tna\tGZMB\tPRF1\tNKG7\n"
    )
    assert read_gmt(path) == {
        "HALLMARK_A": ["CD3E", "CD3D"],
        "HALLMARK_B": ["GZMB", "PRF1", "NKG7"],
    }

    bad = tmp_path / "bad.gmt"
    bad.write_text("HALLMARK_A\tdesc\tCD3E\nHALLMARK_B desc GZMB PRF1\n")
    with pytest.raises(UserInputError, match=r"bad\.gmt', line 2"):
        read_gmt(bad)
    no_genes = tmp_path / "no_genes.gmt"
    no_genes.write_text("HALLMARK_A\tdesc\t\t\n")
    with pytest.raises(UserInputError, match="line 1"):
        read_gmt(no_genes)
    twice = tmp_path / "twice.gmt"
    twice.write_text("S\td\tA\nT\td\tB\nS\td\tC\n")
    with pytest.raises(UserInputError, match="line 3: set 'S' appears twice"):
        read_gmt(twice)
    with pytest.raises(UserInputError, match="not found"):
        read_gmt(tmp_path / "missing.gmt")
    empty = tmp_path / "empty.gmt"
    empty.write_text("\n")
    with pytest.raises(UserInputError, match="holds no gene set"):
        read_gmt(empty)


def test_enrichment_figure_normal_and_empty(tmp_path):
    rng = np.random.default_rng(11)
    tables = []
    for name in ["CD4_naive", "CD8_naive", "B_naive"]:
        pseudobulks, sets = _pseudobulk_study(rng, n_sets=4, shift=1.0)
        tables.append(enrich_cell_type(_de_table(pseudobulks, cell_type=name), sets, LIMITS,
                                       CONTRAST, pseudobulks=pseudobulks))  # fmt: skip
    tables.append(enrich_cell_type(_cell_level_de(), sets, LIMITS, CONTRAST))
    path = tmp_path / "enrichment.png"
    plot_enrichment(pd.concat(tables, ignore_index=True), path=path)
    assert path.stat().st_size > 10_000
    for name, frame in {
        "empty": pd.DataFrame(columns=ENRICHMENT_COLUMNS),
        "ranking_only": tables[-1],
    }.items():
        target = tmp_path / f"{name}.png"
        plot_enrichment(frame, path=target)
        assert target.stat().st_size > 1_000
