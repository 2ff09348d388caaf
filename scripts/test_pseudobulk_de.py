"""Adapter for rule test_pseudobulk_de: PyDESeq2 on each donor-level cell type's pseudobulks, with its counts and figures.

One job tests every cell type the plan gives donor-level DE (the cell types are known only after
annotation; one job keeps the workflow's job count fixed from the start and pays the imports
once). Per cell type ``<slug>`` it writes, under the output folder: ``<slug>.tsv``,
``counts/<slug>_counts.tsv.gz`` and ``counts/<slug>_pseudobulks.tsv`` (read by enrichment) and
``figures/<slug>_volcano.png``, ``figures/<slug>_heatmap.png``.
"""

from pathlib import Path

import anndata as ad

from cordatlas.checks import check_table
from cordatlas.compare.de_summary import DE_COLUMNS
from cordatlas.compare.deseq2 import prespecified_genes, pseudobulk_de_each
from cordatlas.compare.plan import (
    METHOD_PSEUDOBULK,
    planned_cell_types,
    pseudobulk_mask,
    read_plan,
)
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.genesets.library import load_library
from cordatlas.logs import rule_logging
from cordatlas.plotting.de import plot_de_heatmap, plot_volcano
from cordatlas.vocabulary import evidence_title


def write_cell_type(pseudobulk, cell_type, slug, results, notes, *, folder, aliased, log):
    """The table, counts and figures of one tested cell type, written under `folder`."""
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    results = mark_confounded(results, aliased)
    for note in notes:
        log.info("%s: %s", cell_type, note)
    table = folder / f"{slug}.tsv"
    counts_path = folder / "counts" / f"{slug}_counts.tsv.gz"
    obs_path = folder / "counts" / f"{slug}_pseudobulks.tsv"
    fix = "rerun test_pseudobulk_de; report the log if it fails again"
    # an untestable cell type legitimately has no gene: its header is still needed
    check_table(results, table, required_columns=DE_COLUMNS, fix=fix)
    used = pseudobulk[
        pseudobulk_mask(
            pseudobulk.obs,
            cell_type=cell_type,
            conditions=contrast.as_tuple(),
            cell_type_key=comparison.cell_type_key,
            min_cells=comparison.min_cells_per_replicate,
        )
    ]
    counts = used.to_df().T.astype("int64").rename_axis("gene")
    # enrichment (CAMERA) reads the pseudobulks behind every table with genes
    tested = 0 if results.empty else 1
    check_table(counts, counts_path, min_rows=tested, fix=fix)
    check_table(
        used.obs,
        obs_path,
        required_columns=(comparison.replicate_key, "condition", *comparison.covariates),
        min_rows=tested,
        fix=fix,
    )
    results.to_csv(table, sep="\t", index=False)
    counts.to_csv(counts_path, sep="\t")
    used.obs.rename_axis("pseudobulk").to_csv(obs_path, sep="\t")
    title = evidence_title(
        f"{cell_type}: {contrast.condition} vs {contrast.reference}", results["evidence"]
    )
    figures = folder / "figures"
    plot_volcano(results, path=figures / f"{slug}_volcano.png", alpha=comparison.alpha, title=title)
    plot_de_heatmap(
        pseudobulk,
        results,
        cell_type=cell_type,
        path=figures / f"{slug}_heatmap.png",
        n_top=comparison.heatmap_top_genes,
        alpha=comparison.alpha,
        contrast=contrast.as_tuple(),
        cell_type_key=comparison.cell_type_key,
        replicate_key=comparison.replicate_key,
        min_cells=comparison.min_cells_per_replicate,
    )


with rule_logging(snakemake.log[0]) as log:
    folder = Path(snakemake.output.folder)
    for sub in ("counts", "figures"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    plan = read_plan(snakemake.input.plan)
    cell_types = planned_cell_types(plan, METHOD_PSEUDOBULK)
    log.info("donor-level DE for %d cell types", len(cell_types))
    pseudobulk = ad.read_h5ad(snakemake.input.h5ad)
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    aliased = read_aliased_factors(snakemake.input.design)
    slugs = dict(cell_types)
    # cell types side by side in the job's threads (one PyDESeq2 process each), written in
    # plan order as they finish
    tested = pseudobulk_de_each(
        pseudobulk,
        snakemake.params.comparison,
        snakemake.params.contrast,
        cell_types=list(slugs),
        prespecified={ct: prespecified_genes(library, ct) for ct in slugs},
        processes=snakemake.threads,
    )
    for number, (cell_type, results, notes) in enumerate(tested, start=1):
        log.info("cell type %d of %d tested: %s", number, len(slugs), cell_type)
        write_cell_type(
            pseudobulk, cell_type, slugs[cell_type], results, notes,
            folder=folder, aliased=aliased, log=log,
        )  # fmt: skip
