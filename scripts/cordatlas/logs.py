"""Logging for per-rule adapters: everything to the rule's log file, user errors as one clear line.

The log file gets every record (INFO and up), library warnings and, for any error, its
traceback. The console (stderr, which Snakemake shows) gets only what a user should act on:
the workflow's own warnings and errors, one line each, tagged with the job (its log's folder and
name, e.g. ``qc_sample/CB1``). Library warnings (pandas FutureWarnings and the like) stay in the
log file, and so does anything written straight to the process's stderr (file descriptor 2:
C libraries, worker processes such as PyDESeq2's joblib pool, progress bars) while a rule runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cordatlas
from cordatlas.errors import UserInputError

#: Exit status of a job stopped by a UserInputError (the message says what to fix).
USER_ERROR_EXIT = 1
#: Format of log-file records.
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries whose logger prints to stderr itself (anndata: "... storing 'sample' as
#: categorical" on every write); from rule_logging on they log through its handlers instead
#: (for the rest of the job's process: one process runs one rule).
LIBRARY_LOGGERS = ("anndata",)


def package_provenance() -> str:
    """Which copy of the package a job runs: its version and the folder it was imported from."""
    return f"cordatlas {cordatlas.__version__} from {Path(cordatlas.__file__).resolve().parent}"


def job_label(log_path: str | Path) -> str:
    """The job a log belongs to, as the console names it: ``<rule>/<log name without .log>``."""
    path = Path(log_path)
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


class _ConsoleFilter(logging.Filter):
    """What reaches the console: records marked for it, never library warnings or tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False) or record.name == "py.warnings":
            return False
        return record.levelno >= logging.WARNING


def _handlers(log_path: Path, console_stream) -> list[logging.Handler]:
    # appending, as the redirected stderr does: two writers at one end of the file
    to_file = logging.FileHandler(log_path, mode="a")
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    to_file.setLevel(logging.INFO)
    console = logging.StreamHandler(console_stream)
    console.setFormatter(logging.Formatter(f"%(levelname)s [{job_label(log_path)}] %(message)s"))
    console.addFilter(_ConsoleFilter())
    return [to_file, console]


@contextmanager
def rule_logging(
    log_path: str | Path, *, exit_on_user_error: bool = True
) -> Iterator[logging.Logger]:
    """Send log records and warnings to `log_path` (and what matters to stderr) during a rule.

    A :class:`UserInputError` is written to the console as its message alone, one line (it says
    what to fix), and to the log file with its traceback; the job then exits with status
    :data:`USER_ERROR_EXIT` and no traceback on the console (``exit_on_user_error=False``
    re-raises it instead, for callers that are not a Snakemake job). Any other exception is a
    bug: its traceback goes to the log file, the console gets one line naming the log, and it is
    re-raised (Python prints the traceback too).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    log_path.write_text("")  # a fresh log per run of the job
    console_stream, restore_stderr = _stderr_into(log_path)
    handlers = _handlers(log_path, console_stream)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    _adopt_library_loggers()
    logger = logging.getLogger("cordatlas")
    logger.info("%s", package_provenance())
    try:
        yield logger
    except UserInputError as err:
        logger.error("%s", err)
        logger.info("traceback of the error above:", exc_info=True, extra={"file_only": True})
        if not exit_on_user_error:
            raise
        _close(root, handlers)
        restore_stderr()
        raise SystemExit(USER_ERROR_EXIT) from None
    except Exception as err:
        logger.error("unexpected error (please report it with %s): %r", log_path, err)
        logger.error("traceback:", exc_info=True, extra={"file_only": True})
        raise
    finally:
        _close(root, handlers)
        restore_stderr()


def _stderr_into(log_path: Path):
    """Point file descriptor 2 at the log (appending); return the console's stream and an undo.

    Output that bypasses Python's logging (a C library, a joblib worker process inheriting the
    descriptor, ``print(file=sys.stderr)``) then lands in the job's log, while the console
    handler writes to a duplicate of the original stderr. The undo is idempotent.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    console = os.fdopen(os.dup(saved), "w", buffering=1)
    target = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)
    done = False

    def restore() -> None:
        nonlocal done
        if done:
            return
        done = True
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        console.close()

    return console, restore


def _adopt_library_loggers() -> None:
    """Route the libraries' own stderr loggers through the root (the rule's handlers)."""
    for name in LIBRARY_LOGGERS:
        if name not in logging.Logger.manager.loggerDict:
            continue  # not imported: nothing prints yet
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                library.removeHandler(handler)
        library.propagate = True


def _close(root: logging.Logger, handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()


def run_summary(*, ok: bool, results: str | Path, logs: str | Path) -> str:
    """The last console lines of a run: where its results and logs are, or what to do next.

    `results` and `logs` are the study's folders (``results``, ``logs`` for the demo,
    ``studies/<sheet>/results`` for another sheet); the report is ``results/report/index.html``.
    """
    results, logs = Path(results), Path(logs)
    if not ok:
        downloads = "" if logs == Path("logs") else ", downloads' under logs/download_sample/"
        return (
            "cordatlas stopped. The ERROR line(s) above say what to fix; each job's full log "
            f"(with any traceback) is under {logs}/<rule>/{downloads} and the run's own log under "
            ".snakemake/log/. Run the same command again after the fix: finished jobs are kept."
        )
    report = results / "report" / "index.html"
    where = (
        f"Report: {report} (open it in a browser). "
        if report.is_file()
        else "The report was not among this run's targets. "
    )
    return f"cordatlas finished. {where}Tables and figures: {results}/; one log per job: {logs}/."
