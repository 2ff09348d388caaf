# Cell-type labels from a cited marker panel (and optionally CellTypist), integration quality.


rule annotate_cells:
    input:
        h5ad=study_path("results/normalise/normalised.h5ad"),
        clusters=study_path("results/cluster/clusters.h5ad"),
        panel=shipped_file(PARAMS.annotation.panel),
        extra_panel=optional_file(PARAMS.annotation.extra_panel),
        celltypist_model=optional_file(PARAMS.annotation.celltypist_model),
    output:
        # the normalised file with the cell annotations (the stage every analysis reads)
        h5ad=study_path("results/annotate/annotated.h5ad"),
        clusters=report(
            study_path("results/annotate/cluster_labels.tsv"),
            caption="../report/cluster_labels.rst",
            category="Annotation",
        ),
        panel_genes=report(
            study_path("results/annotate/panel_genes.tsv"),
            caption="../report/panel_genes.rst",
            category="Annotation",
        ),
        marker_evidence=report(
            study_path("results/annotate/marker_evidence.tsv"),
            caption="../report/marker_evidence.rst",
            category="Annotation",
        ),
        dotplot=report(
            study_path("results/annotate/panel_dotplot.png"),
            caption="../report/panel_dotplot.rst",
            category="Annotation",
        ),
    log:
        study_path("logs/annotate_cells/annotate_cells.log"),
    benchmark:
        study_path("benchmarks/annotate_cells/annotate_cells.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # the normalised expression without the counts layer, and the scores
        mem_mb=lambda wc, input, attempt: input_mb(input, 2, floor=2000) * attempt,
        runtime=60,
    params:
        annotation=PARAMS.annotation,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/annotate_cells.py"


rule write_atlas:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        umap=study_path("results/cluster/umap.h5ad"),
    output:
        h5ad=study_path("results/atlas.h5ad"),
        umap=report(
            study_path("results/annotate/umap_cell_type.png"),
            caption="../report/umap_cell_type.rst",
            category="Annotation",
        ),
    log:
        study_path("logs/write_atlas/write_atlas.log"),
    benchmark:
        study_path("benchmarks/write_atlas/write_atlas.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # the annotations and one chunk of each matrix (docs/performance.md)
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=60,
    params:
        contrast=PARAMS.contrast,
    script:
        "../../scripts/write_atlas.py"
