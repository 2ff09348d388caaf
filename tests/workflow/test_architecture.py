"""The architecture's promises: light parsing, this checkout's code in every job, one layout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT, run_snakemake

HEAVY = ("anndata", "h5py", "scanpy", "scipy")


def _parse_time_modules() -> list[str]:
    """The cordatlas modules the Snakefile imports while parsing (read from common.smk)."""
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    return sorted(set(re.findall(r"^from (cordatlas[\w.]*) import", text, flags=re.M)))


def test_parsing_imports_no_heavy_library():
    modules = _parse_time_modules()
    assert "cordatlas.params" in modules and len(modules) >= 5, modules
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"parse-time imports pull in {result.stdout.strip()}"


def test_no_package_function_is_named_like_a_test():
    offenders = []
    for path in (ROOT / "scripts" / "cordatlas").rglob("*.py"):
        text = path.read_text()
        offenders += [f"{path.name}:{m}" for m in re.findall(r"^def (test_\w+)", text, re.M)]
        if "__test__" in text:
            offenders.append(f"{path.name}: __test__")
    assert offenders == []


def _copy_checkout(target):
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake")
    for part in ("workflow", "scripts", "config", "envs"):
        shutil.copytree(ROOT / part, target / part, ignore=ignore)


@pytest.mark.workflow
def test_jobs_run_the_package_of_the_checkout_whose_snakefile_runs(tmp_path):
    """A second checkout's rules import its own cordatlas, not the pip-installed one."""
    second = tmp_path / "second_checkout"
    _copy_checkout(second)
    # Mark the second copy so its log line cannot be mistaken for the installed package's.
    init = second / "scripts" / "cordatlas" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "second-'))
    workdir = tmp_path / "study"
    shutil.copytree(second / "config", workdir / "config")
    (workdir / "config" / "small.yaml").write_text("demo:\n  n_cells_per_sample: 100\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(second / "workflow" / "Snakefile"),
            "--directory",
            str(workdir),
            "--cores",
            "1",
            "--configfile",
            "config/small.yaml",
            "--",
            "resources/demo/truth/truth_cells.tsv",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    log = (workdir / "logs" / "simulate_demo" / "simulate_demo.log").read_text()
    assert "cordatlas second-" in log, log[:2000]
    assert str((second / "scripts" / "cordatlas").resolve()) in log, log[:2000]


def test_dry_run_still_parses(tmp_path):
    """The layout change keeps a plain dry run working (guards the parse-time imports above)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    result = run_snakemake(tmp_path, "-n", "--quiet", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
