"""Adapter for rule download_sample: fetch one URL into the cache, sha256-checked and atomic."""

from pathlib import Path

from cordatlas.errors import UserInputError
from cordatlas.io.download import fetch_url
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    digests = snakemake.params.sha256
    if len(digests) > 1:
        raise UserInputError(
            f"sample sheet: rows sharing url {snakemake.params.url} give different sha256 {digests}"
        )
    log.info("downloading %s", snakemake.params.url)
    fetch_url(
        snakemake.params.url,
        Path(snakemake.output[0]),
        sha256=digests[0] if digests else None,
    )
