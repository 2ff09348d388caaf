# All samples meet: merge, normalise and select genes, PCA and integration, clustering and UMAP,
# cluster markers, and the integration's quality metrics.


rule merge_samples:
    input:
        h5ads=expand(study_path("results/qc/{sample}/qc.h5ad"), sample=SAMPLES.index),
        # the gate: summarise_qc stops the run for a sample left too small (on_small_sample: fail)
        qc_summary=study_path("results/qc/qc_summary.tsv"),
    output:
        h5ad=study_path("results/merge/merged.h5ad"),
        summary=report(
            study_path("results/merge/merge_summary.tsv"),
            caption="../report/merge_summary.rst",
            category="Atlas",
        ),
    log:
        study_path("logs/merge_samples/merge_samples.log"),
    benchmark:
        study_path("benchmarks/merge_samples/merge_samples.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # peak 2.4 times the QC'd samples at 83,413 cells (1.34 GB at 20,872: the interpreter)
        mem_mb=lambda wc, input, attempt: input_mb(input, 3, floor=2000) * attempt,
        runtime=60,
    params:
        gene_join=PARAMS.atlas.gene_join,
        min_cells_per_gene=PARAMS.qc.min_cells_per_gene,
        min_shared_genes=PARAMS.atlas.min_shared_genes,
    script:
        "../../scripts/merge_samples.py"


rule normalise_select_genes:
    input:
        h5ad=study_path("results/merge/merged.h5ad"),
    output:
        h5ad=study_path("results/normalise/normalised.h5ad"),
    log:
        study_path("logs/normalise_select_genes/normalise_select_genes.log"),
    benchmark:
        study_path("benchmarks/normalise_select_genes/normalise_select_genes.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # the counts and one chunk of normalised rows: peak 1.9 times the merged file
        mem_mb=lambda wc, input, attempt: input_mb(input, 3, floor=2000) * attempt,
        runtime=60,
    params:
        target_sum=PARAMS.atlas.target_sum,
        n_top_genes=PARAMS.atlas.n_top_genes,
        hvg_batch_key=PARAMS.atlas.hvg_batch_key,
    script:
        "../../scripts/normalise_select_genes.py"


rule integrate_samples:
    input:
        h5ad=study_path("results/normalise/normalised.h5ad"),
    output:
        # embeddings only (no expression matrix): annotate_cells attaches them to the data
        h5ad=study_path("results/integrate/embedding.h5ad"),
    log:
        study_path("logs/integrate_samples/integrate_samples.log"),
    benchmark:
        study_path("benchmarks/integrate_samples/integrate_samples.tsv")
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        # reads the highly variable genes only, PCA by chunks: peak half the normalised file
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=120,
    params:
        n_pcs=PARAMS.atlas.n_pcs,
        method=PARAMS.atlas.integration,
        key=PARAMS.atlas.integration_key,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/integrate_samples.py"


rule cluster_cells:
    input:
        h5ad=study_path("results/integrate/embedding.h5ad"),
    output:
        # the embedding part plus the kNN graph and Leiden labels (no expression matrix)
        h5ad=study_path("results/cluster/clusters.h5ad"),
        sizes=report(
            study_path("results/cluster/cluster_sizes.tsv"),
            caption="../report/cluster_sizes.rst",
            category="Atlas",
        ),
    log:
        study_path("logs/cluster_cells/cluster_cells.log"),
    benchmark:
        study_path("benchmarks/cluster_cells/cluster_cells.tsv")
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        # the input is the embedding part only (12.6 MB at 25,000 cells); the kNN search and the
        # graph peaked at 64 times that, 32 times beyond the interpreter's 0.4 GB
        # (docs/performance.md)
        mem_mb=lambda wc, input, attempt: input_mb(input, 40, floor=2000) * attempt,
        runtime=120,
    params:
        n_neighbors=PARAMS.atlas.n_neighbors,
        exact_knn_max_cells=PARAMS.atlas.exact_knn_max_cells,
        resolutions=PARAMS.atlas.leiden_resolutions,
        working_resolution=PARAMS.atlas.working_resolution,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/cluster_cells.py"


rule embed_umap:
    input:
        h5ad=study_path("results/cluster/clusters.h5ad"),
    output:
        # the layout only (obsm X_umap): write_atlas puts it into the atlas
        h5ad=study_path("results/cluster/umap.h5ad"),
        umap=report(
            study_path("results/cluster/umap.png"),
            caption="../report/umap.rst",
            category="Atlas",
        ),
    log:
        study_path("logs/embed_umap/embed_umap.log"),
    benchmark:
        study_path("benchmarks/embed_umap/embed_umap.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # the cluster part and the layout's working arrays (docs/performance.md)
        mem_mb=lambda wc, input, attempt: input_mb(input, 20, floor=2000) * attempt,
        runtime=120,
    params:
        umap_min_dist=PARAMS.atlas.umap_min_dist,
        umap_init=PARAMS.atlas.umap_init,
        contrast=PARAMS.contrast,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/embed_umap.py"


rule find_markers:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
    output:
        table=report(
            study_path("results/cluster/markers.tsv"),
            caption="../report/markers.rst",
            category="Atlas",
        ),
        dotplot=report(
            study_path("results/cluster/markers_dotplot.png"),
            caption="../report/markers.rst",
            category="Atlas",
        ),
    log:
        study_path("logs/find_markers/find_markers.log"),
    benchmark:
        study_path("benchmarks/find_markers/find_markers.tsv")
    conda:
        "../../envs/scanpy.yaml"
    # one thread: it then runs beside embed_umap as soon as annotation is done (2 threads took
    # 15 s against 23-26 s for the Wilcoxon tests at 100k cells, but waited 24 s for both
    # cores; docs/performance.md); --set-threads find_markers=2 where cores are spare
    threads: 1
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 2, floor=2000) * attempt,
        runtime=60,
    params:
        markers=PARAMS.atlas.markers,
    script:
        "../../scripts/find_markers.py"


rule evaluate_integration:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
    output:
        metrics=report(
            study_path("results/annotate/integration_metrics.tsv"),
            caption="../report/integration_metrics.rst",
            category="Atlas",
        ),
        verdict=report(
            study_path("results/annotate/integration_verdict.tsv"),
            caption="../report/integration_verdict.rst",
            category="Study design",
        ),
    log:
        study_path("logs/evaluate_integration/evaluate_integration.log"),
    benchmark:
        study_path("benchmarks/evaluate_integration/evaluate_integration.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=30,
    params:
        resolutions=PARAMS.atlas.leiden_resolutions,
        working_resolution=PARAMS.atlas.working_resolution,
        batch_key=PARAMS.atlas.integration_key,
        contrast=PARAMS.contrast,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/evaluate_integration.py"
