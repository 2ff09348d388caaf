"""Output checks (issue 13): each rule refuses to complete with a file no later stage can use.

The check functions on small hand-made AnnData and tables, then rule adapters run as a job
would (a stand-in for Snakemake's ``snakemake`` object) on valid and on unusable results.
"""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cordatlas.checks import check_cells_genes, check_counts, check_table
from cordatlas.errors import OutputCheckError, UserInputError
from cordatlas.params import default_params

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
PATH = "results/qc/S1/qc.h5ad"
FIX = "relax the QC thresholds"


def counts_adata(n_cells: int = 3, n_genes: int = 4, *, dtype=np.float32) -> ad.AnnData:
    """Cells x genes of small integer counts, one obs and one obsm key, a counts layer."""
    X = sp.csr_matrix(np.arange(n_cells * n_genes, dtype=dtype).reshape(n_cells, n_genes) % 5)
    adata = ad.AnnData(X=X)
    adata.obs_names = [f"S1:c{i}" for i in range(n_cells)]
    adata.var_names = [f"G{i}" for i in range(n_genes)]
    adata.obs["total_counts"] = np.asarray(X.sum(axis=1)).ravel()
    adata.obsm["X_pca"] = np.zeros((n_cells, 2))
    adata.layers["counts"] = X.copy()
    return adata


def refused(call, *args, **kwargs) -> str:
    """The message of the OutputCheckError `call` raises."""
    with pytest.raises(OutputCheckError) as raised:
        call(*args, **kwargs)
    return str(raised.value)


# ---- check_cells_genes --------------------------------------------------------------------
def test_a_valid_anndata_passes_every_check():
    check_cells_genes(
        counts_adata(),
        PATH,
        require_obs=("total_counts",),
        require_obsm=("X_pca",),
        require_layers=("counts",),
        counts="X",
        fix=FIX,
    )
    check_cells_genes(counts_adata(dtype=np.int64), PATH, counts="counts", fix=FIX)


def test_zero_cells_are_refused_naming_the_file_and_what_was_found():
    message = refused(check_cells_genes, counts_adata(n_cells=0), PATH, what=" after QC", fix=FIX)
    assert message.startswith(f"{PATH} holds 0 cells after QC (at least 1 needed)")
    assert "no later stage can use it" in message and message.endswith(FIX)
    message = refused(
        check_cells_genes, counts_adata(n_cells=2), PATH, min_cells=3, obs_unit="pseudobulks",
        fix=FIX,
    )  # fmt: skip
    assert message.startswith(f"{PATH} holds 2 pseudobulks (at least 3 needed)")
    # an empty output is legal where the rule says so (a sample dropped by QC)
    check_cells_genes(counts_adata(n_cells=0), PATH, min_cells=0, counts="X", fix=FIX)


def test_zero_or_too_few_genes_are_refused():
    message = refused(check_cells_genes, counts_adata(n_genes=0), PATH, fix=FIX)
    assert message.startswith(f"{PATH} holds 0 genes (at least 1 needed)")
    message = refused(check_cells_genes, counts_adata(n_genes=3), PATH, min_genes=200, fix=FIX)
    assert message.startswith(f"{PATH} holds 3 genes (at least 200 needed)")


@pytest.mark.parametrize(
    ("key", "kind"),
    [("require_obs", "obs column(s)"), ("require_obsm", "obsm key(s)"),
     ("require_layers", "layer(s)")],
)  # fmt: skip
def test_a_missing_obs_obsm_or_layer_key_is_refused(key, kind):
    message = refused(check_cells_genes, counts_adata(), PATH, fix=FIX, **{key: ("absent",)})
    assert message.startswith(f"{PATH} lacks {kind} ['absent']")


def test_a_counts_layer_that_is_missing_is_refused_not_a_key_error():
    adata = counts_adata()
    del adata.layers["counts"]
    assert refused(check_cells_genes, adata, PATH, counts="counts", fix=FIX).startswith(
        f"{PATH} lacks layer(s) ['counts']"
    )


def test_non_integer_or_negative_counts_are_refused():
    adata = counts_adata()
    adata.X = np.log1p(adata.X)  # log-normalised, as a rule writing the wrong matrix would
    message = refused(check_cells_genes, adata, PATH, counts="X", fix=FIX)
    assert message.startswith(f"{PATH} X has non-integer values")
    assert "where raw integer counts are expected" in message
    adata = counts_adata()
    adata.layers["counts"] = adata.layers["counts"] * -1.0
    message = refused(check_cells_genes, adata, PATH, counts="counts", fix=FIX)
    assert message.startswith(f"{PATH} layers['counts'] has negative values")
    # X need not be counts unless asked (a normalised atlas)
    check_cells_genes(adata, PATH, fix=FIX)


def test_check_counts_on_dense_and_integer_matrices():
    check_counts(np.array([[0, 3], [2, 1]], dtype=np.int64), PATH, fix=FIX)
    check_counts(np.array([[0.0, 3.0]]), PATH, fix=FIX)
    message = refused(check_counts, np.array([[0.5, 3.0]]), PATH, where="X", fix=FIX)
    assert message.startswith(f"{PATH} X has non-integer values (e.g. 0.5")


def test_an_output_check_error_is_a_user_input_error():
    """rule_logging prints it as one line, as any error the user can fix."""
    assert issubclass(OutputCheckError, UserInputError)


# ---- check_table --------------------------------------------------------------------------
TABLE = "results/de/de_all.tsv.gz"
COLUMNS = ("cell_type", "gene", "padj")


def test_a_valid_table_passes_and_an_empty_one_with_its_header_too():
    table = pd.DataFrame({"cell_type": ["T"], "gene": ["CD3E"], "padj": [0.01], "extra": [1]})
    check_table(table, TABLE, required_columns=COLUMNS, min_rows=1, fix=FIX)
    check_table(pd.DataFrame(columns=list(COLUMNS)), TABLE, required_columns=COLUMNS, fix=FIX)


def test_a_table_missing_a_column_is_refused_even_when_empty():
    message = refused(
        check_table, pd.DataFrame(columns=["cell_type", "gene"]), TABLE,
        required_columns=COLUMNS, fix=FIX,
    )  # fmt: skip
    assert message.startswith(f"{TABLE} lacks column(s) ['padj']")
    assert "no later stage can use it" in message and message.endswith(FIX)


def test_a_table_with_too_few_rows_is_refused():
    table = pd.DataFrame(columns=list(COLUMNS))
    message = refused(
        check_table, table, TABLE, required_columns=COLUMNS, min_rows=1, what=" (one per sample)",
        fix=FIX,
    )  # fmt: skip
    assert message.startswith(f"{TABLE} holds 0 rows (one per sample) (at least 1 needed)")


# ---- adapters, run as a job would ---------------------------------------------------------
def run_adapter(rule: str, **snakemake) -> None:
    """Run scripts/<rule>.py with a stand-in for Snakemake's `snakemake` object."""
    fields = {name: SimpleNamespace(**value) if isinstance(value, dict) else value
              for name, value in snakemake.items()}  # fmt: skip
    fields.setdefault("wildcards", SimpleNamespace())
    fields.setdefault("threads", 1)
    runpy.run_path(
        str(SCRIPTS / f"{rule}.py"), init_globals={"snakemake": SimpleNamespace(**fields)}
    )


def job_error(tmp_path: Path, rule: str, **snakemake) -> str:
    """Run the adapter expecting the job to fail on a user error; return its log's message."""
    with pytest.raises(SystemExit) as exited:
        run_adapter(rule, **snakemake)
    assert exited.value.code != 0
    return (tmp_path / "job.log").read_text()


def ingested_sample(n_cells: int, n_empty: int, *, seed: int = 0) -> ad.AnnData:
    """One sample as ingest writes it: integer counts, obs barcode and sample."""
    rng = np.random.default_rng(seed)
    genes = [f"MT-G{i}" for i in range(5)] + ["RPS1", "HBB"] + [f"G{i}" for i in range(150)]
    size = np.r_[rng.lognormal(np.log(2500), 0.3, n_cells), np.full(n_empty, 40.0)]
    profile = rng.gamma(0.5, 1.0, len(genes))
    mean = profile / profile.sum() * size[:, None]
    adata = ad.AnnData(sp.csr_matrix(rng.poisson(mean).astype(np.float32)))
    adata.var_names = genes
    adata.obs_names = [f"S1:{i}" for i in range(adata.n_obs)]
    adata.obs["barcode"] = [str(i) for i in range(adata.n_obs)]
    adata.obs["sample"] = "S1"
    return adata


def qc_job(tmp_path: Path, adata: ad.AnnData, *, on_small_sample: str) -> dict:
    """The `snakemake` fields of one qc_sample job on `adata`."""
    source = tmp_path / "ingest.h5ad"
    adata.write_h5ad(source)
    qc = dataclasses.replace(default_params().qc, min_cells_per_sample=20)
    out = tmp_path / "qc"
    return dict(
        input={"h5ad": str(source)},
        output={name: str(out / file) for name, file in (
            ("h5ad", "qc.h5ad"), ("cells", "cells.tsv"), ("thresholds", "thresholds.tsv"),
            ("summary", "summary.tsv"))},
        params={"qc": qc, "fixed": None, "seed": 0, "on_small_sample": on_small_sample},
        wildcards={"sample": "S1"},
        log=[str(tmp_path / "job.log")],
    )  # fmt: skip


def test_qc_sample_writes_a_usable_sample_and_an_empty_dropped_one(tmp_path):
    (tmp_path / "qc").mkdir()
    job = qc_job(tmp_path, ingested_sample(120, 5), on_small_sample="fail")
    run_adapter("qc_sample", **job)
    written = ad.read_h5ad(job["output"]["h5ad"])
    assert written.n_obs > 0 and "pct_counts_mt" in written.obs
    # every cell empty, sample dropped (on_small_sample: drop): 0 cells is the legal result
    job = qc_job(tmp_path, ingested_sample(0, 60), on_small_sample="drop")
    run_adapter("qc_sample", **job)
    assert ad.read_h5ad(job["output"]["h5ad"]).n_obs == 0


def test_qc_sample_refuses_a_kept_sample_left_with_no_cell(tmp_path):
    (tmp_path / "qc").mkdir()
    job = qc_job(tmp_path, ingested_sample(0, 60), on_small_sample="keep")
    message = job_error(tmp_path, "qc_sample", **job)
    assert f"{job['output']['h5ad']} holds 0 cells after QC (at least 1 needed)" in message
    assert "set the sample's `on_small_sample` to `drop`" in message
    assert not Path(job["output"]["h5ad"]).exists()  # nothing left for a rerun to trust


def test_summarise_de_keeps_an_empty_de_table_legal_with_its_header(tmp_path):
    from cordatlas.compare.de_summary import DE_COLUMNS, empty_de_table
    from cordatlas.compare.plan import PLAN_COLUMNS

    plan = pd.DataFrame([["T cell", "T_cell", "pseudobulk_deseq2", "not_testable", "2 donors",
                          2, 1, 50, 20]], columns=PLAN_COLUMNS)  # fmt: skip
    plan.to_csv(tmp_path / "plan.tsv", sep="\t", index=False)
    # the two DE folders; the plan says which tables they hold
    (tmp_path / "pseudobulk").mkdir()
    (tmp_path / "cell_level").mkdir()
    table = tmp_path / "pseudobulk" / "T_cell.tsv"
    empty_de_table().to_csv(table, sep="\t", index=False)
    outputs = {"summary": str(tmp_path / "summary.tsv"), "table": str(tmp_path / "all.tsv")}
    folders = {
        "pseudobulk": str(tmp_path / "pseudobulk"),
        "cell_level": str(tmp_path / "cell_level"),
    }
    job = dict(
        input={"plan": str(tmp_path / "plan.tsv"), **folders},
        output=outputs, params={"alpha": 0.05}, log=[str(tmp_path / "job.log")],
    )  # fmt: skip
    run_adapter("summarise_de", **job)
    assert list(pd.read_csv(outputs["table"], sep="\t").columns) == DE_COLUMNS
    # a DE table written without its header cannot be summarised into a usable table
    pd.DataFrame({"gene": []}).to_csv(table, sep="\t", index=False)
    message = job_error(tmp_path, "summarise_de", **job)
    assert f"{outputs['table']} lacks column(s) ['cell_type'" in message


def toy_atlas(*, n_genes: int = 20, seed: int = 0) -> ad.AnnData:
    """Four donors (two per condition), two cell types of 12 cells each, raw counts in a layer."""
    rng = np.random.default_rng(seed)
    rows = [(f"d{d}", "cord_blood" if d < 2 else "adult", t) for d in range(4) for t in "TB"]
    obs = pd.DataFrame(
        [(donor, f"s{donor}", condition, cell_type) for donor, condition, cell_type in rows
         for _ in range(12)],
        columns=["donor", "sample", "condition", "cell_type"],
    )  # fmt: skip
    obs.index = [f"c{i}" for i in range(len(obs))]
    counts = sp.csr_matrix(rng.poisson(5.0, size=(len(obs), n_genes)).astype(np.float32))
    adata = ad.AnnData(X=counts.copy(), obs=obs)
    adata.var_names = [f"G{i}" for i in range(n_genes)]
    adata.layers["counts"] = counts
    return adata


def comparison_job(tmp_path: Path, adata: ad.AnnData, outputs: dict) -> dict:
    """`snakemake` fields of a comparison rule reading `adata` and a design without aliasing."""
    adata.write_h5ad(tmp_path / "atlas.h5ad")
    design = tmp_path / "design_findings.tsv"
    pd.DataFrame(columns=["severity", "topic", "message"]).to_csv(design, sep="\t", index=False)
    params = default_params(contrast={"condition": "cord_blood", "reference": "adult"})
    return dict(
        input={"h5ad": str(tmp_path / "atlas.h5ad"), "design": str(design)},
        output={name: str(tmp_path / file) for name, file in outputs.items()},
        params={"comparison": params.comparison, "contrast": params.contrast},
        log=[str(tmp_path / "job.log")],
    )


PSEUDOBULK_OUTPUTS = {"h5ad": "pseudobulks.h5ad", "plan": "de_plan.tsv"}


def test_aggregate_pseudobulk_writes_pseudobulks_and_plan_of_a_valid_atlas(tmp_path):
    job = comparison_job(tmp_path, toy_atlas(), PSEUDOBULK_OUTPUTS)
    run_adapter("aggregate_pseudobulk", **job)
    assert ad.read_h5ad(job["output"]["h5ad"]).n_obs == 8  # 2 cell types x 4 donors
    assert len(pd.read_csv(job["output"]["plan"], sep="\t")) == 2


def test_aggregate_pseudobulk_refuses_pseudobulks_without_a_gene(tmp_path):
    """No gene measured in every sample: nothing a DE job could test is left."""
    atlas = toy_atlas()
    sample = str(atlas.obs["sample"].iloc[0])
    atlas.uns["unmeasured_genes"] = {sample: list(atlas.var_names)}  # as the merge records
    job = comparison_job(tmp_path, atlas, PSEUDOBULK_OUTPUTS)
    message = job_error(tmp_path, "aggregate_pseudobulk", **job)
    assert f"{job['output']['h5ad']} holds 0 genes (at least 1 needed)" in message
    assert not Path(job["output"]["h5ad"]).exists()


def test_test_composition_writes_its_tables_of_a_valid_atlas(tmp_path):
    outputs = {"proportions": "proportions.tsv", "tests": "tests.tsv", "figure": "c.png"}
    job = comparison_job(tmp_path, toy_atlas(), outputs)
    run_adapter("test_composition", **job)
    assert len(pd.read_csv(job["output"]["tests"], sep="\t")) == 2


# ---- the documentation --------------------------------------------------------------------
def test_reliability_lists_every_checked_rule():
    """docs/reliability.md has a row for each rule whose adapter checks its outputs."""
    doc = (SCRIPTS.parent / "docs/reliability.md").read_text()
    section = doc[doc.index("## Outputs each rule checks") :]
    checked = sorted(
        script.stem
        for script in SCRIPTS.glob("*.py")
        if "from cordatlas.checks import" in script.read_text()
        and ("check_table" in script.read_text() or "check_cells_genes" in script.read_text())
    )
    assert len(checked) >= 13
    missing = [rule for rule in checked if f"| `{rule}` |" not in section]
    assert missing == [], f"add these rules to 'Outputs each rule checks': {missing}"
