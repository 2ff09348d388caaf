"""Adapter for rule test_cell_level_de: the exploratory cell-level fallback for each cell type without donor replication.

One job tests every cell type the plan routes to the cell-level test (none: an empty folder).
Each cell type's cells are read from the atlas on their own (backed), so memory follows the
largest cell type, not the atlas. Per cell type ``<slug>`` it writes ``<slug>.tsv`` and
``figures/<slug>_volcano.png`` under the output folder.
"""

from pathlib import Path

from cordatlas.checks import check_table
from cordatlas.compare.cell_level import UNS_KEYS, cell_level_de
from cordatlas.compare.de_summary import DE_COLUMNS
from cordatlas.compare.plan import METHOD_CELL_LEVEL, planned_cell_types, read_plan
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.io.stage import read_obs, read_rows
from cordatlas.logs import rule_logging
from cordatlas.plotting.de import plot_volcano
from cordatlas.vocabulary import evidence_title

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    folder = Path(snakemake.output.folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    plan = read_plan(snakemake.input.plan)
    cell_types = planned_cell_types(plan, METHOD_CELL_LEVEL)
    log.info("exploratory cell-level DE for %d cell types", len(cell_types))
    aliased = read_aliased_factors(snakemake.input.design)
    if cell_types:
        obs = read_obs(snakemake.input.h5ad)
        labels = obs[comparison.cell_type_key].astype(str).to_numpy()
        in_contrast = obs["condition"].astype(str).isin(contrast.as_tuple()).to_numpy()
    for cell_type, slug in cell_types:
        cells = read_rows(
            snakemake.input.h5ad,
            (labels == cell_type) & in_contrast,
            uns_keys=UNS_KEYS,
        )
        log.info("%s: %d cells", cell_type, cells.n_obs)
        results, notes = cell_level_de(cells, comparison, contrast, cell_type=cell_type)
        results = mark_confounded(results, aliased)
        for note in notes:
            log.warning("%s: %s", cell_type, note)
        table = folder / f"{slug}.tsv"
        # a cell type with too few cells legitimately has no gene: its header is still needed
        check_table(
            results,
            table,
            required_columns=DE_COLUMNS,
            fix="rerun test_cell_level_de; report the log if it fails again",
        )
        results.to_csv(table, sep="\t", index=False)
        title = evidence_title(
            f"{cell_type}: {contrast.condition} vs {contrast.reference}", results["evidence"]
        )
        plot_volcano(
            results,
            path=folder / "figures" / f"{slug}_volcano.png",
            alpha=comparison.alpha,
            title=title,
        )
        del cells
