"""Adapter for rule test_signatures: donor-level test per signature and cell type, literature concordance, control beside."""

from pathlib import Path

import anndata as ad

from cordatlas.compare.donor_stats import replicate_table
from cordatlas.compare.signatures import load_library, read_replicate_scores, test_signatures
from cordatlas.logs import rule_logging
from cordatlas.plotting.signatures import plot_signature_by_donor, plot_signature_heatmap

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.comparison
    contrast = snakemake.params.contrast
    summary = read_replicate_scores(snakemake.input.replicates)
    obs = ad.read_h5ad(snakemake.input.h5ad, backed="r").obs
    design = replicate_table(obs, replicate_key=cfg["replicate_key"], columns=cfg["covariates"])
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    results = test_signatures(
        summary,
        design,
        library,
        contrast=contrast,
        covariates=cfg["covariates"],
        min_replicates=cfg["min_replicates_per_group"],
        alpha=cfg["alpha"],
    )
    for row in results.query("concordance in ['agree', 'disagree']").itertuples():
        log.info("%s in %s: %s (%s)", row.signature, row.cell_type, row.concordance, row.evidence)
    results.to_csv(snakemake.output.tests, sep="\t", index=False)
    plot_signature_heatmap(
        results, path=snakemake.output.heatmap, contrast=contrast, alpha=cfg["alpha"]
    )
    folder = Path(snakemake.output.donors)
    folder.mkdir(parents=True, exist_ok=True)
    for signature in sorted(set(summary["signature"])):
        plot_signature_by_donor(
            summary,
            signature=signature,
            path=folder / f"{signature}.png",
            results=results,
            contrast=contrast,
        )
