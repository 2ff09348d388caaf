"""Reliability of real runs: job-time errors on the console, downloads, kill and resume.

- A user error raised inside a job shows as one console line; its traceback is in the job's log.
- A download that fails for good (HTTP 404, a wrong sha256) is tried once and leaves no file.
- A run killed (SIGKILL) while a heavy rule runs, unlocked and rerun, gives the tables of an
  uninterrupted run; run with ``--cores 1`` against ``demo_run``'s ``--cores 2``, it also keeps
  the 1-vs-2-cores property for the threaded rules (simulate_demo, integrate_samples,
  cluster_cells, test_pseudobulk_de). Two runs with the same seed are compared in
  test_demo.py::test_a_second_run_gives_identical_clusters_and_labels.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cordatlas.io.download import cache_path
from cordatlas.logs import job_label

from .conftest import make_workdir, run_snakemake, snakemake_command

pytestmark = pytest.mark.workflow

BODY = bytes(range(256)) * 16
SHEET_HEADER = "sample\tdonor\tcondition\ttissue\tstudy\ttechnology\tformat\tpath\turl\tsha256"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path.startswith("/data/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        else:
            self.send_error(404)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _download_log(url: str) -> Path:
    cached = cache_path(url, "resources/downloads")
    return Path("logs/download_sample") / f"{cached.parent.name}_{cached.name}.log"


def test_job_time_errors_are_one_console_line_and_leave_nothing(tmp_path, server):
    """A corrupt file, an HTTP 404 and a wrong sha256, each failing inside its job."""
    workdir = make_workdir(tmp_path)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    missing, served = f"{base}/missing/AD1.h5ad", f"{base}/data/AD2.h5ad"
    (workdir / "data").mkdir()
    (workdir / "data/CB1.h5ad").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    wrong = "0" * 64
    rows = [
        "CB1\tCB1\tcord_blood\tcord_blood\ts1\t10x\th5ad\tdata/CB1.h5ad\t\t",
        f"AD1\tAD1\tadult\tperipheral_blood\ts1\t10x\th5ad\t\t{missing}\t",
        f"AD2\tAD2\tadult\tperipheral_blood\ts1\t10x\th5ad\t\t{served}\t{wrong}",
    ]
    (workdir / "mine.tsv").write_text("\n".join([SHEET_HEADER, *rows]) + "\n")
    targets = [
        "studies/mine/results/ingest/CB1.h5ad",
        str(cache_path(missing, "resources/downloads")),
        str(cache_path(served, "resources/downloads")),
    ]
    result = run_snakemake(
        workdir,
        "--cores",
        "2",
        "--keep-going",
        "--retries",  # as the slurm profile sets: download_sample's own `retries: 0` wins
        "1",
        "--config",
        "samples=mine.tsv",
        "--",
        *targets,
        check=False,
    )
    console = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in console, console[-6000:]
    errors = [line for line in console.splitlines() if line.startswith("ERROR [")]
    expected = {
        "ingest_sample/CB1": ("sample 'CB1'", "data/CB1.h5ad", "cannot be read as h5ad"),
        job_label(_download_log(missing)): (
            missing,
            "HTTP 404",
            "check `url` in the sample sheet",
        ),
        job_label(_download_log(served)): (
            served,
            wrong,
            hashlib.sha256(BODY).hexdigest(),
        ),
    }
    attempts = {"ingest_sample/CB1": 2}  # --retries 1 runs the ingest job twice, downloads once
    assert len(errors) == sum(attempts.get(job, 1) for job in expected), errors
    for job, words in expected.items():
        lines = [e for e in errors if e.startswith(f"ERROR [{job}] ")]
        assert len(lines) == attempts.get(job, 1), (job, errors)
        assert all(word in lines[0] for word in words), lines[0]
    assert "cordatlas stopped." in console  # the onerror handler says where the logs are
    # the tracebacks are in the jobs' logs
    for log in (
        Path("studies/mine/logs/ingest_sample/CB1.log"),
        _download_log(missing),
        _download_log(served),
    ):
        text = (workdir / log).read_text()
        assert "Traceback (most recent call last)" in text and "ERROR" in text, log
    # final errors are tried once: no job-level retries, no retry inside fetch_url
    assert sorted(server.requests) == ["/data/AD2.h5ad", "/missing/AD1.h5ad"]
    # nothing a rerun would trust: no output, no cached file, no part file
    assert not (workdir / targets[0]).exists()
    downloads = workdir / "resources/downloads"
    assert not downloads.exists() or [p for p in downloads.rglob("*") if p.is_file()] == []


JOB_SCRIPT = """
import logging, os, subprocess, sys, warnings
import anndata  # its own logger prints to stderr
from cordatlas.errors import UserInputError
from cordatlas.logs import rule_logging

with rule_logging(sys.argv[1]) as log:
    log.info("read 10 cells")
    logging.getLogger("anndata").info("... storing 'sample' as categorical")
    warnings.warn("a library's deprecation", FutureWarning)
    os.write(2, b"C-level noise\\n")  # a C library, or a worker process inheriting stderr:
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('worker noise')"])
    logging.getLogger("cordatlas.qc").warning("sample S1: 3 cells kept")
    if sys.argv[2] == "user":
        raise UserInputError("sample 'S1': fix the sheet")
    raise KeyError("bug")
"""


@pytest.mark.parametrize("kind", ["user", "bug"])
def test_rule_logging_splits_console_and_log(tmp_path, kind):
    """Console: the workflow's warnings and errors, one line each; the log: everything."""
    log = tmp_path / "logs/qc_sample/S1.log"
    result = subprocess.run(
        [sys.executable, "-c", JOB_SCRIPT, str(log), kind], capture_output=True, text=True
    )
    assert result.returncode == 1
    console = result.stderr.splitlines()
    assert console[0] == "WARNING [qc_sample/S1] sample S1: 3 cells kept"
    text = log.read_text()
    assert "read 10 cells" in text and "FutureWarning: a library's deprecation" in text
    assert "Traceback (most recent call last)" in text
    assert "storing 'sample' as categorical" in text
    assert "C-level noise" in text and "worker noise" in text
    for quiet in ("deprecation", "read 10 cells", "storing", "noise"):
        assert quiet not in result.stderr, quiet
    if kind == "user":
        assert console[1:] == ["ERROR [qc_sample/S1] sample 'S1': fix the sheet"]
    else:  # a bug keeps Python's traceback on the console, after one line naming the log
        assert (
            console[1]
            == f"ERROR [qc_sample/S1] unexpected error (please report it with {log}): KeyError('bug')"
        )
        assert "Traceback (most recent call last)" in result.stderr


# ---- kill and resume --------------------------------------------------------------------------
def _kill_during(workdir: Path, *, started: Path, finished: Path, deadline_s: float) -> None:
    """Start the demo, SIGKILL snakemake and its jobs once `started` exists (and not `finished`)."""
    command = snakemake_command(workdir, "--cores", "1")
    with open(workdir / "interrupted.log", "w") as out:
        process = subprocess.Popen(
            command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + deadline_s
        while not started.exists():
            assert process.poll() is None, (workdir / "interrupted.log").read_text()[-4000:]
            assert time.monotonic() < deadline, f"{started} never appeared"
            time.sleep(0.2)
        time.sleep(1.0)  # well inside the job
        assert not finished.exists(), "the heavy rule finished before the kill"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {
        str(path.relative_to(folder)): pd.read_csv(path, sep="\t", keep_default_na=False)
        for path in sorted(folder.rglob("*.tsv"))
    }


def test_a_run_killed_mid_integration_resumes_to_identical_results(demo_run, tmp_path):
    workdir = make_workdir(tmp_path)
    _kill_during(
        workdir,
        started=workdir / "logs/integrate_samples/integrate_samples.log",
        finished=workdir / "results/integrate/embedding.h5ad",
        deadline_s=1800,
    )
    assert not (workdir / "results/report/index.html").exists()
    run_snakemake(workdir, "--unlock")  # a killed snakemake leaves its lock, as for a user
    resumed = run_snakemake(workdir, "--cores", "1")
    assert "integrate_samples" in resumed.stderr  # the killed job ran again, from the start
    assert "cordatlas finished. Report: results/report/index.html" in resumed.stdout

    first, second = _tables(demo_run / "results"), _tables(workdir / "results")
    assert sorted(second) == sorted(first)
    for name, table in first.items():
        pd.testing.assert_frame_equal(second[name], table, check_exact=False, rtol=1e-6, obj=name)
    atlas_first = ad.read_h5ad(demo_run / "results/atlas.h5ad")
    atlas_second = ad.read_h5ad(workdir / "results/atlas.h5ad")
    assert list(atlas_first.obs_names) == list(atlas_second.obs_names)
    for key in ("leiden", "cell_type"):
        assert atlas_first.obs[key].astype(str).equals(atlas_second.obs[key].astype(str)), key
    assert np.allclose(atlas_first.obsm["X_umap"], atlas_second.obsm["X_umap"])
