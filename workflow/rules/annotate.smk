# Cell-type labels from a cited marker panel (and optionally CellTypist), integration quality.


rule annotate_cells:
    input:
        h5ad=study_path("results/normalise/normalised.h5ad"),
        clusters=study_path("results/cluster/clusters.h5ad"),
        panel=shipped_file(PARAMS.annotation.panel),
        extra_panel=optional_file(PARAMS.annotation.extra_panel),
        celltypist_model=optional_file(PARAMS.annotation.celltypist_model),
    output:
        h5ad=study_path("results/atlas.h5ad"),
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
        umap=report(
            study_path("results/annotate/umap_cell_type.png"),
            caption="../report/umap_cell_type.rst",
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
        mem_mb=lambda wc, input, attempt: input_mb(input, 8) * attempt,
        runtime=60,
    params:
        annotation=PARAMS.annotation,
        contrast=PARAMS.contrast,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/annotate_cells.py"
