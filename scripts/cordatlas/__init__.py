"""cordatlas: cord blood vs adult single-cell analysis, the package behind the Snakemake workflow."""

__version__ = "0.1.0"
