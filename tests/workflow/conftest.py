"""Run the real Snakefile in a scratch folder, as a user would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "workflow" / "Snakefile"


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake -s <repo>/workflow/Snakefile -d workdir ARGS`, output captured."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
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
    run_snakemake(workdir, "--cores", "2")
    return workdir
