"""Logging for per-rule adapters: everything to the rule's log file, user errors as one clear line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cordatlas
from cordatlas.errors import UserInputError


def package_provenance() -> str:
    """Which copy of the package a job runs: its version and the folder it was imported from."""
    return f"cordatlas {cordatlas.__version__} from {Path(cordatlas.__file__).resolve().parent}"


@contextmanager
def rule_logging(log_path: str | Path) -> Iterator[logging.Logger]:
    """Send log records and warnings to `log_path` (and stderr) for the duration of a rule.

    A :class:`UserInputError` is logged as its message alone (it says what to fix); any other
    exception with its traceback. Both are re-raised so Snakemake marks the job failed.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handlers = [logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)]
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    logger = logging.getLogger("cordatlas")
    logger.info("%s", package_provenance())
    try:
        yield logger
    except UserInputError as err:
        logger.error("%s", err)
        raise
    except Exception:
        logger.exception("unexpected error (please report it with this log)")
        raise
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
