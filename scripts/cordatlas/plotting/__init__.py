"""Figures: one base (backend, palette, save, empty figure, p-values) and one module per stage.

Modules: :mod:`~cordatlas.plotting.qc` (per-sample and overview QC), :mod:`~.atlas` (UMAP,
dot plots), :mod:`~.de` (volcano, top-gene heatmap), :mod:`~.composition`,
:mod:`~.enrichment` and :mod:`~.signatures` (signature contrasts, development axis).
"""

# The backend is set in base; importing it here sets it before any module imports pyplot.
from cordatlas.plotting import base  # noqa: F401
