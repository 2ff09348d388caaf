"""Parameter objects: one frozen dataclass per config section, built once from the validated config.

The Snakefile builds :class:`WorkflowParams` after validation and hands each rule the section it
needs; adapters pass those objects to the package instead of long keyword lists. The dataclasses
hold no defaults of their own: every default lives in ``workflow/schemas/config.schema.yaml``
(:func:`default_params` fills them from there, for tests and notebooks).

Light by design (standard library only, plus the config reader): the Snakefile imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The schema every default comes from.
CONFIG_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@dataclass(frozen=True)
class Contrast:
    """The comparison: `condition` (e.g. cord_blood) against `reference` (e.g. adult)."""

    condition: str
    reference: str

    def as_tuple(self) -> tuple[str, str]:
        return (self.condition, self.reference)


@dataclass(frozen=True)
class DemoParams:
    """config ``demo``: the simulated study the default sample sheet points to."""

    outdir: str
    seed: int
    n_cells_per_sample: int
    n_genes: int
    condition_effect: bool
    realism: str
    stress: str


@dataclass(frozen=True)
class IngestParams:
    """config ``ingest``: species handling and the download cache."""

    species: str
    species_multiplet_nmads: float
    species_multiplet_min_share: float
    species_multiplet_min_cells: int
    download_dir: str


@dataclass(frozen=True)
class DoubletParams:
    """config ``qc.doublets``: how doublets are scored, cut and removed."""

    remove: bool
    method: str
    expected_doublet_rate: float
    threshold_method: str
    threshold: float | None


@dataclass(frozen=True)
class QCParams:
    """config ``qc``: metrics, adaptive and fixed thresholds, doublets, small samples."""

    mito_prefix: str
    ribo_prefixes: tuple[str, ...]
    hb_pattern: str
    nmads: dict[str, float]
    max_pct_counts_mt: float | None
    min_counts: float | None
    min_genes: float | None
    max_pct_counts_hb: float | None
    hb_rich_min_pct_hb: float | None
    doublets: DoubletParams
    min_cells_per_gene: int
    min_cells_per_sample: int
    on_small_sample: str


@dataclass(frozen=True)
class MarkerParams:
    """config ``atlas.markers``: the cluster marker table and its dot plot."""

    n_genes: int
    n_dotplot: int


@dataclass(frozen=True)
class AtlasParams:
    """config ``atlas``: gene join, normalisation, genes, embedding, integration, clustering."""

    gene_join: str
    min_shared_genes: int
    target_sum: float | None
    n_top_genes: int
    hvg_batch_key: str | None
    n_pcs: int
    integration: str
    integration_key: str
    n_neighbors: int
    exact_knn_max_cells: int
    leiden_resolutions: tuple[float, ...]
    working_resolution: float
    umap_min_dist: float
    umap_init: str
    seed: int
    markers: MarkerParams


@dataclass(frozen=True)
class AnnotationParams:
    """config ``annotation``: the marker panel, its cut-offs, an optional CellTypist model."""

    panel: str
    extra_panel: str | None
    min_score: float
    min_margin: float
    min_detected_fraction: float
    celltypist_model: str | None


@dataclass(frozen=True)
class ComparisonParams:
    """config ``comparison``: who is a replicate, what is tested, and how."""

    cell_type_key: str
    replicate_key: str
    exclude_cell_types: tuple[str, ...]
    min_cells_per_replicate: int
    min_replicates_per_group: int
    #: Names of the covariates, in config order (config items are a name, categorical, or
    #: ``{name: ..., type: categorical | numeric}``; :meth:`__post_init__` keeps the names).
    covariates: tuple[str, ...]
    alpha: float
    min_gene_counts: int
    heatmap_top_genes: int
    composition_transform: str
    composition_trend: bool
    low_power_max_replicates: int
    contamination_max_fraction: float
    contamination_min_explained: float
    loo_max_genes: int
    #: Those of `covariates` declared ``type: numeric``: one centred column in every model.
    numeric_covariates: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names, numeric = [], []
        for item in self.covariates:
            if isinstance(item, Mapping):
                names.append(str(item["name"]))
                if item.get("type", "categorical") == "numeric":
                    numeric.append(str(item["name"]))
            else:
                names.append(str(item))
        object.__setattr__(self, "covariates", tuple(names))
        object.__setattr__(self, "numeric_covariates", tuple(numeric))


@dataclass(frozen=True)
class SignatureParams:
    """config ``signatures``: the library, extra sets, minimum genes, a development reference."""

    library: str
    extra_sets: tuple[str, ...]
    min_genes: int
    development_reference: str | None
    development_min_donors: int
    cycling_min_score: float
    control_flag_pvalue: float
    control_flag_difference: float


@dataclass(frozen=True)
class EnrichmentParams:
    """config ``enrichment``: gene-set size limits and CAMERA's inter-gene correlation."""

    min_set_size: int
    max_set_size: int
    inter_gene_correlation: float | None


@dataclass(frozen=True)
class WorkflowParams:
    """Every section, built once from the validated config."""

    contrast: Contrast
    demo: DemoParams
    ingest: IngestParams
    qc: QCParams
    atlas: AtlasParams
    annotation: AnnotationParams
    comparison: ComparisonParams
    signatures: SignatureParams
    enrichment: EnrichmentParams

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WorkflowParams:
        """Build from a config validated (and filled with defaults) by config.validate_config."""
        return _build(cls, config)


def _build(cls: type, values: Mapping[str, Any]) -> Any:
    """Instantiate dataclass `cls` from `values`; nested dataclasses recurse, lists become tuples."""
    hints = {f.name: f.type for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, hint in hints.items():
        value = values[name]
        nested = _DATACLASSES.get(str(hint))
        if nested is not None:
            value = _build(nested, value)
        elif isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = dict(value)
        kwargs[name] = value
    return cls(**kwargs)


_DATACLASSES = {
    cls.__name__: cls
    for cls in (
        Contrast,
        DemoParams,
        IngestParams,
        DoubletParams,
        QCParams,
        MarkerParams,
        AtlasParams,
        AnnotationParams,
        ComparisonParams,
        SignatureParams,
        EnrichmentParams,
    )
}


def default_params(**overrides: Any) -> WorkflowParams:
    """Parameters with every default from the schema (for tests and notebooks).

    `overrides` replace whole top-level sections of the config, e.g.
    ``default_params(contrast={"condition": "cord_blood", "reference": "adult"})``.
    """
    from cordatlas.config import read_schema, validate_config

    config = {
        "samples": "config/samples.tsv",
        "contrast": {"condition": "cord_blood", "reference": "adult"},
        **overrides,
    }
    return WorkflowParams.from_config(validate_config(config, read_schema(CONFIG_SCHEMA)))
