"""Run the real Snakefile in a scratch folder, as a user would."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

#: Snakemake's line after each finished job, and the progress line that follows it.
FINISHED = re.compile(r"^Finished jobid: \d+ \(Rule: (?P<rule>[^)]+)\)")
PROGRESS = re.compile(r"^(?P<done>\d+) of (?P<total>\d+) steps \((?P<pct>[^)]+)\) done")

_PYTEST_CONFIG: list[pytest.Config] = []


@pytest.fixture(scope="session", autouse=True)
def _progress_reporter(pytestconfig: pytest.Config):
    """Lets run_snakemake print progress past pytest's output capture."""
    _PYTEST_CONFIG.append(pytestconfig)
    yield
    _PYTEST_CONFIG.clear()


def show_progress(line: str) -> None:
    """Write one line to the terminal now, even while pytest captures the test's output."""
    if not _PYTEST_CONFIG:
        return
    config = _PYTEST_CONFIG[0]
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """`snakemake -s <repo>/workflow/Snakefile -d workdir ARGS`.

    A dry run gets ``--quiet host`` so its plan (each job's files) is printed: the default
    profile's ``quiet: [rules]`` would hide it, and tests read it.
    """
    dry = "--dry-run" in args or "-n" in args
    extra = ["--quiet", "host"] if dry else []
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        *extra,
        *args,
    ]


def _stream(process: subprocess.Popen, label: str) -> tuple[str, str]:
    """Read a running snakemake's output; one terminal line per finished job."""
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.extend(process.stdout), daemon=True)
    reader.start()
    stderr, rule = [], None
    for line in process.stderr:
        stderr.append(line)
        if finished := FINISHED.match(line):
            rule = finished["rule"]
        elif progress := PROGRESS.match(line):
            show_progress(
                f"[snakemake {label}] {progress['done']}/{progress['total']} steps "
                f"({progress['pct']}){f', {rule} finished' if rule else ''}"
            )
    process.wait()
    reader.join()
    return "".join(stdout), "".join(stderr)


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir` with ARGS, output captured, progress shown per finished job."""
    command = snakemake_command(workdir, *args)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir
    )
    stdout, stderr = _stream(process, Path(workdir).name)
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
        )
    return result


def make_workdir(tmp: Path) -> Path:
    """A scratch study folder holding a copy of the shipped config (the defaults run the demo)."""
    shutil.copytree(ROOT / "config", tmp / "config")
    return tmp


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The whole default workflow on the simulated demo, run once per test session."""
    workdir = make_workdir(tmp_path_factory.mktemp("demo"))
    result = run_snakemake(workdir, "--cores", "2")
    # what the user saw, for the console tests
    (workdir / "console.txt").write_text(result.stdout + result.stderr)
    return workdir
