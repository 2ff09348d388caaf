"""The bad-input corpus: config files, sample sheets and count files a user may get wrong.

Each case asserts the one message a user sees (it names the file and line, or the sample and the
file, and says what to do) and that it is a `UserInputError` (logged as one line, never a
traceback). docs/reliability.md lists every case with its message; keep the two in step.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from cordatlas.config import main as check_config_main
from cordatlas.config import read_config_file, read_samples, read_schema, validate_config
from cordatlas.errors import UserInputError
from cordatlas.io.formats import sniff_format
from cordatlas.io.ingest import read_sample
from cordatlas.io.writers import write_counts, write_delimited
from cordatlas.params import default_params

from ..workflow.conftest import make_workdir, run_snakemake

ROOT = Path(__file__).resolve().parents[2]
CONFIG_SCHEMA = read_schema(ROOT / "workflow/schemas/config.schema.yaml")
SAMPLES_SCHEMA = read_schema(ROOT / "workflow/schemas/samples.schema.yaml")
CONTRAST = {"condition": "cord_blood", "reference": "adult"}
INGEST = default_params().ingest
GEO_CSV = "cord_cbmc_cd8gated_dropseq_gse100866/GSE100866_CD8_merged-RNA_umi.csv.gz"


def _one_line(err: pytest.ExceptionInfo[UserInputError]) -> str:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# ============================================================================ config files

SHIPPED_CONFIG = (ROOT / "config/config.yaml").read_text()

#: (id, file content, the message's expected text after "<path> ")
CONFIG_FILE_CASES = [
    ("tab_indent", "qc:\n\tmin_genes: 3\n", "line 2, column 1: a tab character; YAML indents"),
    ("tab_after_key", "qc:\n  nmads: [3,\t3]\n", "line 2, column 13: a tab character"),
    (
        "unclosed_quote",
        'samples: "config/samples.tsv\nqc: {}\n',
        "while scanning a quoted scalar; close the quote opened at line 1, column 10",
    ),
    (
        "unclosed_bracket",
        "atlas:\n  leiden_resolutions: [0.5, 1.0\n  working_resolution: 1.0\n",
        "close the [ opened at line 2, column 23",
    ),
    (
        "unclosed_brace",
        "contrast: {condition: cord_blood\nqc: {}\n",
        "close the { opened at line 1",
    ),
    ("bad_indent", "qc:\n  nmads: 3\n doublets: 2\n", "line 3, column 2: expected <block end>"),
    (
        "colon_in_value",
        "qc:\n  hb_pattern: a: b\n",
        "line 2, column 16: mapping values are not allowed here; check the indentation",
    ),
    (
        "duplicate_section",
        "qc:\n  nmads: 3\natlas: {}\nqc:\n  nmads: 5\n",
        "line 4, column 1: key 'qc' is given twice in one section (first at line 1)",
    ),
    (
        "duplicate_nested_key",
        "atlas:\n  integration: harmony\n  integration: none\n",
        "line 3, column 3: key 'integration' is given twice in one section (first at line 2)",
    ),
    ("latin1_comment", "qc:\n  # caf\xe9\n", "line 2, column 8: byte 0xe9 is not UTF-8 text"),
    ("empty", "", "is empty; it must hold the workflow's config keys"),
    ("only_comments", "# nothing here\n", "is empty; it must hold"),
    ("top_level_list", "- samples\n- qc\n", "holds a list at its top level, not keys with values"),
    ("top_level_text", "samples config/samples.tsv\n", "holds a str at its top level"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [c[1:] for c in CONFIG_FILE_CASES],
    ids=[c[0] for c in CONFIG_FILE_CASES],
)
def test_bad_config_file_names_line_and_fix(tmp_path, text, expected):
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UserInputError) as err:
        read_config_file(path)
    assert _one_line(err).startswith(f"{path} "), err.value
    assert expected in str(err.value)


def test_tab_in_the_shipped_config_names_its_line(tmp_path):
    lines = SHIPPED_CONFIG.splitlines()
    number = next(i for i, line in enumerate(lines, start=1) if line.startswith("  nmads:"))
    lines[number - 1] = "\t" + lines[number - 1].lstrip()
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match=rf"line {number}, column 1: a tab character"):
        read_config_file(path)


def test_good_config_files_parse_as_yaml_does():
    assert read_config_file(ROOT / "config/config.yaml") == yaml.safe_load(SHIPPED_CONFIG)


def test_config_check_command_names_the_line(tmp_path, capsys):
    bad, good = tmp_path / "bad.yaml", ROOT / "config/config.yaml"
    bad.write_text("qc:\n\tnmads: 3\n")
    assert check_config_main([str(good), str(bad)]) == 1
    out = capsys.readouterr()
    assert f"{bad} line 2, column 1: a tab character" in out.err
    assert f"{good}: valid YAML" in out.out


def _edit(section: str, key: str, value: object) -> dict:
    config = yaml.safe_load(SHIPPED_CONFIG)
    (config[section] if section else config)[key] = value
    return config


#: (id, config edit, expected message) for keys that parse but are wrong.
CONFIG_VALUE_CASES = [
    ("unknown_key", ("qc", "max_mito", 10), r"qc: unknown key\(s\) \['max_mito'\]; allowed keys"),
    ("unknown_section", ("", "qcc", {}), r"\(top level\): unknown key\(s\) \['qcc'\]"),
    ("bad_enum", ("atlas", "integration", "scvi"), r"atlas.integration: 'scvi' is not allowed"),
    ("wrong_type", ("atlas", "leiden_resolutions", "0.5"), r"atlas.leiden_resolutions: '0.5' is"),
    (
        "resolution_not_computed",
        ("atlas", "working_resolution", 0.8),
        r"working_resolution: 0.8 is not among atlas.leiden_resolutions",
    ),
    (
        "same_contrast_levels",
        ("", "contrast", {"condition": "adult", "reference": "adult"}),
        r"condition and reference are both 'adult'; they must be two different groups",
    ),
    ("bad_regex", ("qc", "hb_pattern", "^(HB"), r"qc.hb_pattern: '\^\(HB' is not a valid regular"),
    (
        "markup_in_path",
        ("", "samples", "<b>samples.tsv"),
        r"samples: '<b>samples.tsv' holds a character this workflow refuses",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"),
    [c[1:] for c in CONFIG_VALUE_CASES],
    ids=[c[0] for c in CONFIG_VALUE_CASES],
)
def test_bad_config_value_names_the_key(edit, message):
    with pytest.raises(UserInputError, match=message):
        validate_config(_edit(*edit), CONFIG_SCHEMA)


# ============================================================================ sample sheets

HEADER = "sample\tdonor\tcondition\ttissue\tstudy\ttechnology\tformat\tpath"
CB1 = "CB1\tCB1\tcord_blood\tcord_blood\ts1\t10x\th5ad\ta.h5ad"
AD1 = "AD1\tAD1\tadult\tperipheral_blood\ts1\t10x\th5ad\tb.h5ad"


def _sheet(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


#: (id, sheet bytes, expected message after "sample sheet <path>")
SHEET_CASES = [
    ("zero_bytes", b"", r" is empty \(0 bytes\); it needs a header line and one row per sample"),
    ("blank_lines", b"\n \n\t\n", r" is empty \(only blank lines\)"),
    (
        "latin1",
        _sheet(HEADER, CB1, AD1.replace("s1", "caf\xe9")).decode().encode("latin-1"),
        r" line 3, column 35: byte 0xe9 is not UTF-8 \(the sheet looks saved as Latin-1.*"
        r"save the sheet as tab-separated text \(.tsv\), UTF-8 encoded",
    ),
    ("utf16", _sheet(HEADER, CB1, AD1).decode().encode("utf-16"), r" is UTF-16 text"),
    ("xlsx", _xlsx(), r" is a zip archive \(an Excel .xlsx workbook is one\)"),
    ("xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), r" is an Excel .xls workbook"),
    ("gzipped", gzip.compress(_sheet(HEADER, CB1, AD1)), r" is gzip-compressed; decompress it"),
    ("nul_byte", _sheet(HEADER, CB1, AD1 + "\x00"), r" line 3, column 50: a NUL byte"),
    (
        "unclosed_quote",
        _sheet(HEADER, CB1.replace("s1", '"s1'), AD1),
        r" line 2, field 5: '\"s1' opens a double quote that does not close in the same field",
    ),
    (
        "one_field_too_many",
        _sheet(HEADER, CB1, AD1 + "\textra"),
        r" line 3 \(sample 'AD1'\) has 9 fields but the header names 8 columns "
        r"\(extra value 'extra'\); a value holds a tab or the row has a stray field",
    ),
    (
        "tab_inside_value",
        _sheet(HEADER, CB1.replace("\ts1\t", "\tstudy\t1\t"), AD1),
        r" line 2 \(sample 'CB1'\) has 9 fields but the header names 8 columns",
    ),
    (
        "comma_separated",
        _sheet(*(line.replace("\t", ",") for line in (HEADER, CB1, AD1))),
        r" line 1 has no tab \(the sheet looks comma-separated\); columns must be separated",
    ),
    (
        "space_separated",
        _sheet(*(line.replace("\t", "  ") for line in (HEADER, CB1, AD1))),
        r" line 1 has no tab \(the columns look separated by spaces\)",
    ),
    ("row_without_tabs", _sheet(HEADER, CB1, AD1.replace("\t", " ")), r" line 3 has no tab"),
    (
        "no_header",
        _sheet(CB1, AD1),
        r" line 1: none of \['CB1', 'CB1', 'cord_blood', 'cord_blood'\] is a column name",
    ),
    (
        "duplicate_column",
        _sheet(HEADER + "\tpath", CB1 + "\tc.h5ad", AD1 + "\td.h5ad"),
        r" line 1: column\(s\) \['path'\] occur more than once in the header",
    ),
    (
        "empty_header_field",
        _sheet(HEADER.replace("\tcondition\t", "\t\t"), CB1, AD1),
        r" line 1: header field 3 is empty; name the column or delete it",
    ),
    ("header_only", _sheet(HEADER), r" has no rows; add one row per sample"),
    (
        "unknown_column",
        _sheet(HEADER + "\tcolour", CB1, AD1),
        r": unknown column\(s\) \['colour'\]",
    ),
    (
        "required_empty",
        _sheet(HEADER, CB1.replace("\ts1\t", "\t\t"), AD1),
        r" line 2 \(sample 'CB1'\): required column\(s\) \['study'\] empty or absent",
    ),
    (
        "bad_format",
        _sheet(HEADER, CB1.replace("h5ad\t", "loon\t"), AD1),
        r" line 2 \(sample 'CB1'\), column 'format': 'loon' is not allowed; use one of",
    ),
    (
        "non_numeric_threshold",
        _sheet(HEADER + "\tmin_counts", CB1 + "\tmany", AD1 + "\t500"),
        r" line 2 \(sample 'CB1'\), column 'min_counts': 'many' is not a number",
    ),
    ("duplicate_sample", _sheet(HEADER, CB1, AD1, CB1), r": sample id\(s\) \['CB1'\] occur more"),
    (
        "condition_not_in_contrast",
        _sheet(HEADER, CB1, AD1.replace("\tadult\t", "\tneonate\t")),
        r" line 3 \(sample 'AD1'\), column 'condition': 'neonate' is not one of the contrast",
    ),
    (
        "path_and_url",
        _sheet(HEADER + "\turl", CB1 + "\thttps://example.org/a.h5ad", AD1 + "\t"),
        r" line 2 \(sample 'CB1'\): give exactly one of `path` or `url` \(found both\)",
    ),
    (
        "sha256_without_url",
        _sheet(HEADER + "\tsha256", CB1 + "\t" + "a" * 64, AD1 + "\t"),
        r" line 2 \(sample 'CB1'\): `sha256` is set but `url` is not",
    ),
    (
        "bad_barcode_regex",
        _sheet(HEADER + "\tbarcode_pattern", CB1 + "\t([", AD1 + "\t"),
        r" line 2 \(sample 'CB1'\), column 'barcode_pattern': '\(\[' is not a valid regular",
    ),
    (
        "line_number_after_blank_line",
        _sheet(HEADER, CB1, "", AD1.replace("h5ad\t", "h6\t")),
        r" line 4 \(sample 'AD1'\), column 'format': 'h6' is not allowed",
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"), [c[1:] for c in SHEET_CASES], ids=[c[0] for c in SHEET_CASES]
)
def test_bad_sheet_gives_one_message(tmp_path, content, expected):
    path = tmp_path / "samples.tsv"
    path.write_bytes(content)
    with pytest.raises(UserInputError) as err:
        read_samples(path, SAMPLES_SCHEMA, contrast=CONTRAST)
    assert re.match(re.escape(f"sample sheet {path}") + expected, _one_line(err)), err.value


def test_sheet_tolerates_what_spreadsheets_write(tmp_path):
    """A UTF-8 BOM, CRLF line ends, quoted values, trailing empty cells and short rows."""
    path = tmp_path / "samples.tsv"
    rows = [HEADER + "\tsex\t", CB1.replace("s1", '"s1"') + "\tfemale\t\t", AD1]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n\r\n")
    samples = read_samples(path, SAMPLES_SCHEMA, contrast=CONTRAST)
    assert list(samples.index) == ["CB1", "AD1"]
    assert samples.loc["CB1", "study"] == "s1" and samples.loc["CB1", "sex"] == "female"
    assert pd.isna(samples.loc["AD1", "sex"])


# ============================================================================ count files

BARCODES = ["".join(np.random.default_rng(i).choice(list("ACGT"), 14)) + "-1" for i in range(40)]
GENES = ["CD3E", "MS4A1", "LYZ", "GNLY", "MT-CO1", "MT-ND1", "HBB", "NKG7"] + [
    f"GENE{i}" for i in range(22)
]


def _counts() -> ad.AnnData:
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(2.0, (len(BARCODES), len(GENES))).astype(np.float32))
    return ad.AnnData(X, obs=pd.DataFrame(index=BARCODES), var=pd.DataFrame(index=GENES))


def _write(tmp: Path, fmt: str, name: str, adata: ad.AnnData | None = None, **kw) -> Path:
    return write_counts(_counts() if adata is None else adata, tmp / name, format=fmt, **kw)


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _flip(path: Path, at: float | int) -> Path:
    """Invert 8 bytes at a fraction of the file (float) or a byte offset (int)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at) if isinstance(at, float) else at
    data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    path.write_bytes(bytes(data))
    return path


def _table(tmp: Path, text: str, name: str = "counts.csv", encoding: str = "utf-8") -> Path:
    path = tmp / name
    path.write_bytes(text.encode(encoding))
    return path


def _genes_x_cells_csv(values: Callable[[int, int], str] = lambda g, c: str(g + c)) -> str:
    cells = BARCODES[:4]
    lines = ["," + ",".join(cells)]
    lines += [f"{gene}," + ",".join(values(g, c) for c in range(4)) for g, gene in enumerate(GENES)]
    return "\n".join(lines) + "\n"


def _mtx_folder(tmp: Path, edit: Callable[[Path], None]) -> Path:
    folder = _write(tmp, "10x_mtx", "filtered_feature_bc_matrix")
    edit(folder)
    return folder


def _plain(folder: Path, name: str) -> Path:
    """Unzip one of a Matrix Market folder's .gz files in place; returns the plain file."""
    packed = folder / f"{name}.gz"
    plain = folder / name
    plain.write_bytes(gzip.decompress(packed.read_bytes()))
    packed.unlink()
    return plain


def _real_valued_mtx(folder: Path) -> None:
    mtx = _plain(folder, "matrix.mtx")
    lines = mtx.read_text().splitlines()
    body = [" ".join([*line.split()[:2], "1.5"]) for line in lines[3:]]
    mtx.write_text("\n".join([lines[0].replace("integer", "real"), *lines[1:3], *body]) + "\n")


def _h5_edit(tmp: Path, edit: Callable[[h5py.File], None]) -> Path:
    path = _write(tmp, "10x_h5", "edited.h5")
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _float_h5(f: h5py.File) -> None:
    data = f["matrix/data"][()].astype(np.float32) + 0.5
    del f["matrix/data"]
    f["matrix/data"] = data


def _tar_gz(tmp: Path) -> Path:
    folder = _write(tmp, "10x_mtx", "run1")
    path = tmp / "run1.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname="run1")
    shutil.rmtree(folder)
    return path


def _log_normalised(tmp: Path, fmt: str) -> Path:
    adata = _counts()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()).astype(np.float32))
    if fmt == "h5ad":
        path = tmp / "lognorm.h5ad"
        adata.write_h5ad(path)
        return path
    path = tmp / "lognorm.loom"
    adata.write_loom(path)
    return path


def _zip(tmp: Path) -> Path:
    path = tmp / "counts.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("counts.csv", _genes_x_cells_csv())
    return path


def _foreign_hdf5(tmp: Path) -> Path:
    path = tmp / "other.h5"
    with h5py.File(path, "w") as f:
        f["values"] = np.arange(10)
    return path


def _loom_without_cell_ids(tmp: Path) -> Path:
    path = _write(tmp, "loom", "nocells.loom")
    with h5py.File(path, "r+") as f:
        del f["col_attrs/obs_names"]
    return path


#: (id, make(tmp) -> path, sample-sheet values, expected message after "sample 'S1': ").
#: {path} in the message stands for the path made.
DATA_CASES: list[tuple[str, Callable[[Path], Path], dict[str, str], str]] = [
    # ---- a file of one format declared as another
    (
        "h5ad_declared_10x_h5",
        lambda t: _write(t, "h5ad", "s.h5ad"),
        {"format": "10x_h5"},
        "{path} is an h5ad (AnnData) file, not a 10x .h5 (Cell Ranger HDF5) file; set `format` "
        "to h5ad (or auto) in the sample sheet",
    ),
    (
        "loom_declared_10x_h5",
        lambda t: _write(t, "loom", "s.loom"),
        {"format": "10x_h5"},
        "{path} is a loom file, not a 10x .h5 (Cell Ranger HDF5) file; set `format` to loom",
    ),
    (
        "10x_h5_declared_h5ad",
        lambda t: _write(t, "10x_h5", "s.h5"),
        {"format": "h5ad"},
        "{path} is a 10x .h5 (Cell Ranger HDF5) file, not an h5ad (AnnData) file; set `format` "
        "to 10x_h5 (or auto)",
    ),
    (
        "10x_h5_declared_loom",
        lambda t: _write(t, "10x_h5", "s.h5"),
        {"format": "loom"},
        "{path} is a 10x .h5 (Cell Ranger HDF5) file, not a loom file",
    ),
    (
        "10x_h5_declared_10x_mtx",
        lambda t: _write(t, "10x_h5", "s.h5"),
        {"format": "10x_mtx"},
        "{path} is a 10x .h5 (Cell Ranger HDF5) file, not a 10x Matrix Market file or archive",
    ),
    (
        "csv_declared_h5ad",
        lambda t: _write(t, "delimited", "s.csv.gz"),
        {"format": "h5ad"},
        "{path} is a text table, not an h5ad (AnnData) file; set `format` to delimited (or auto)",
    ),
    (
        "h5ad_declared_delimited",
        lambda t: _write(t, "h5ad", "s.h5ad"),
        {"format": "delimited"},
        "{path} is an h5ad (AnnData) file, not a text table; set `format` to h5ad",
    ),
    (
        "text_named_h5",
        lambda t: _table(t, _genes_x_cells_csv(), name="s.h5"),
        {"format": "10x_h5"},
        "{path} is a text table, not a 10x .h5 (Cell Ranger HDF5) file; set `format` to "
        "delimited in the sample sheet",
    ),
    (
        "zip_declared_delimited",
        _zip,
        {"format": "delimited"},
        "{path} is a zip archive, not a text table; point `path` at the counts file itself",
    ),
    (
        "foreign_hdf5_declared_10x_h5",
        _foreign_hdf5,
        {"format": "10x_h5"},
        "{path} is HDF5 but not a Cell Ranger matrix (no groups)",
    ),
    # ---- empty, truncated or corrupt files
    ("empty_10x_h5", lambda t: _table(t, "", "s.h5"), {"format": "10x_h5"}, "{path} is empty"),
    ("empty_h5ad", lambda t: _table(t, "", "s.h5ad"), {"format": "h5ad"}, "{path} is empty"),
    ("empty_csv", lambda t: _table(t, ""), {"format": "delimited"}, "{path} is empty (0 bytes)"),
    (
        "truncated_10x_h5",
        lambda t: _cut(_write(t, "10x_h5", "s.h5"), 0.6),
        {"format": "10x_h5"},
        "{path} is truncated or corrupt (OSError: Unable to synchronously open file (truncated "
        "file",
    ),
    (
        "truncated_h5ad",
        lambda t: _cut(_write(t, "h5ad", "s.h5ad"), 0.6),
        {"format": "h5ad"},
        "{path} is truncated or corrupt",
    ),
    (
        "truncated_loom",
        lambda t: _cut(_write(t, "loom", "s.loom"), 0.6),
        {"format": "loom"},
        "{path} is truncated or corrupt",
    ),
    (
        "truncated_csv_gz_end",
        lambda t: _cut(_write(t, "delimited", "s.csv.gz"), 0.95),
        {"format": "delimited"},
        "{path} is truncated or corrupt (EOFError: Compressed file ended before the "
        "end-of-stream marker was reached); delete it and download or copy it again",
    ),
    (
        "corrupt_csv_gz_start",
        lambda t: _flip(_write(t, "delimited", "s.csv.gz"), 12),
        {"format": "delimited"},
        "{path} is truncated or corrupt (its gzip data do not decompress); delete it and "
        "download or copy it again",
    ),
    (
        "truncated_csv_gz_start",
        lambda t: _cut(_write(t, "delimited", "s.csv.gz"), 0.02),
        {"format": "delimited"},
        "{path} is truncated or corrupt (EOFError",
    ),
    (
        "corrupt_csv_gz",
        lambda t: _flip(_write(t, "delimited", "s.csv.gz"), 0.5),
        {"format": "delimited"},
        "{path} is truncated or corrupt",
    ),
    (
        "truncated_matrix_mtx_gz",
        lambda t: _mtx_folder(t, lambda f: _cut(f / "matrix.mtx.gz", 0.6) and None),
        {"format": "10x_mtx"},
        "{path}/matrix.mtx.gz is truncated or corrupt (EOFError",
    ),
    (
        "truncated_barcodes_tsv_gz",
        lambda t: _mtx_folder(t, lambda f: _cut(f / "barcodes.tsv.gz", 0.6) and None),
        {"format": "10x_mtx"},
        "{path}/barcodes.tsv.gz is truncated or corrupt",
    ),
    (
        "truncated_tar_gz",
        lambda t: _cut(_tar_gz(t), 0.6),
        {"format": "10x_mtx"},
        "{path} cannot be extracted as a tar archive",
    ),
    (
        "empty_features_tsv",
        lambda t: _mtx_folder(t, lambda f: _plain(f, "features.tsv").write_bytes(b"") and None),
        {"format": "10x_mtx"},
        "{path}/features.tsv is empty; copy the complete Cell Ranger folder",
    ),
    (
        "matrix_mtx_not_matrix_market",
        lambda t: _mtx_folder(t, lambda f: _plain(f, "matrix.mtx").write_text("1 2 3\n") and None),
        {"format": "10x_mtx"},
        "{path}/matrix.mtx is not a readable Matrix Market file (ValueError",
    ),
    (
        "mtx_from_another_run",
        lambda t: _mtx_folder(
            t, lambda f: (f / "barcodes.tsv.gz").write_bytes(gzip.compress(b"AAACCTGA-1\n"))
        ),
        {"format": "10x_mtx"},
        "{path}/matrix.mtx.gz is 30 features x 40 cells but features.tsv.gz lists 30 features "
        "and barcodes.tsv.gz 1 barcodes; the folder mixes files from different runs",
    ),
    (
        "10x_h5_without_features",
        lambda t: _h5_edit(t, lambda f: f["matrix"].__delitem__("features")),
        {"format": "10x_h5"},
        "{path} is not a complete Cell Ranger v3 matrix (it lacks matrix/features/id, "
        "matrix/features/name); use the .h5 Cell Ranger wrote",
    ),
    (
        "10x_h5_inconsistent_indptr",
        lambda t: _h5_edit(t, lambda f: f["matrix/indptr"].__setitem__(-1, 10**6)),
        {"format": "10x_h5"},
        "{path}: its data, indices and indptr do not form a 30 genes x 40 cells matrix",
    ),
    (
        "loom_without_cell_ids",
        _loom_without_cell_ids,
        {"format": "loom"},
        "{path} has no CellID column attribute naming the cells",
    ),
    # ---- text tables that do not parse
    (
        "csv_header_only",
        lambda t: _table(t, "," + ",".join(BARCODES[:4]) + "\n"),
        {"format": "delimited"},
        "{path} has no data rows after its header line",
    ),
    (
        "csv_latin1",
        lambda t: _table(t, _genes_x_cells_csv().replace("MS4A1", "MS4A\xe9"), encoding="latin-1"),
        {"format": "delimited"},
        "{path} is not UTF-8 text (line 3, byte 0xe9); it looks saved as Latin-1 or "
        "Windows-1252: save it as UTF-8",
    ),
    (
        "csv_non_numeric_value",
        lambda t: _table(t, _genes_x_cells_csv(lambda g, c: "high" if g == 5 else "1")),
        {"format": "delimited"},
        "{path} is not a numeric table with one label column (",
    ),
    (
        "csv_ragged_row",
        lambda t: _table(t, _genes_x_cells_csv().replace("\nLYZ,", "\nLYZ,7,")),
        {"format": "delimited"},
        "{path} is not a numeric table with one label column (",
    ),
    (
        "csv_header_longer_than_rows",
        lambda t: _table(t, "gene,a,b,c,d\nCD3E,1\nLYZ,2\n"),
        {"format": "delimited"},
        "{path}: the header has 5 fields but the first row has 2",
    ),
    (
        "transposed_with_wrong_orientation",
        lambda t: _table(t, _genes_x_cells_csv()),
        {"format": "delimited", "orientation": "cells_x_genes"},
        "`orientation` is cells_x_genes in the sample sheet, but the column labels look like cell "
        "barcodes in {path}: read that way its cells would be 'CD3E', 'MS4A1', 'LYZ'",
    ),
    (
        "wrong_orientation_by_mito_genes",
        lambda t: _table(t, "gene,c1,c2\nCD3E,1,2\nMT-CO1,3,4\nLYZ,5,6\n"),
        {"format": "delimited", "orientation": "cells_x_genes"},
        "but the row labels include mitochondrial genes in {path}: read that way its cells would "
        "be 'CD3E', 'MT-CO1', 'LYZ' and its genes 'c1', 'c2'; set `orientation` to genes_x_cells",
    ),
    # ---- values that are not raw counts, per format
    (
        "csv_non_integer",
        lambda t: _table(t, _genes_x_cells_csv(lambda g, c: "1.5")),
        {"format": "delimited"},
        "the counts of {path} has non-integer values (e.g. 1.5, max 1.5)",
    ),
    (
        "csv_negative",
        lambda t: _table(t, _genes_x_cells_csv(lambda g, c: "-1" if g == 2 else "3")),
        {"format": "delimited"},
        "the counts of {path} has negative values (min -1): looks scaled",
    ),
    (
        "csv_missing_values",
        lambda t: _table(t, _genes_x_cells_csv(lambda g, c: "NA" if g == 3 else "2")),
        {"format": "delimited"},
        "the counts of {path} has 4 NaN or infinite values: not counts",
    ),
    (
        "mtx_non_integer",
        lambda t: _mtx_folder(t, _real_valued_mtx),
        {"format": "10x_mtx"},
        "the counts of {path} has non-integer values (e.g. 1.5",
    ),
    (
        "10x_h5_non_integer",
        lambda t: _h5_edit(t, _float_h5),
        {"format": "10x_h5"},
        "the counts of {path} has non-integer values",
    ),
    (
        "h5ad_log_normalised",
        lambda t: _log_normalised(t, "h5ad"),
        {"format": "h5ad"},
        "{path} holds no raw counts: X has non-integer values",
    ),
    (
        "loom_log_normalised",
        lambda t: _log_normalised(t, "loom"),
        {"format": "loom"},
        "{path} holds no raw counts: X has non-integer values",
    ),
]


@pytest.mark.parametrize(
    ("make", "values", "expected"),
    [c[1:] for c in DATA_CASES],
    ids=[c[0] for c in DATA_CASES],
)
def test_bad_count_file_names_sample_file_and_fix(tmp_path, make, values, expected):
    path = make(tmp_path)
    with pytest.raises(UserInputError) as err:
        read_sample(path, {"sample": "S1", **values}, params=INGEST)
    message = _one_line(err)
    assert message.startswith("sample 'S1': "), message
    assert expected.format(path=path) in message, message


def test_each_written_format_is_sniffed_as_itself(tmp_path):
    """The content check passes every format the writers (and so the demo) produce."""
    for fmt, name in [("10x_h5", "a.h5"), ("h5ad", "a.h5ad"), ("loom", "a.loom")]:
        assert sniff_format(_write(tmp_path, fmt, name)) == fmt
    assert sniff_format(_write(tmp_path, "10x_h5", "v2.h5", version=2)) == "10x_h5"
    assert sniff_format(_write(tmp_path, "10x_mtx", "mtx")) == "10x_mtx"
    assert sniff_format(_tar_gz(tmp_path)) == "10x_mtx"
    table = write_delimited(_counts(), tmp_path / "a.tsv", orientation="cells_x_genes")
    assert sniff_format(table) == "delimited"
    for fmt, name in [("10x_h5", "r.h5"), ("h5ad", "r.h5ad"), ("loom", "r.loom")]:
        out = read_sample(
            _write(tmp_path, fmt, name), {"sample": "S1", "format": fmt}, params=INGEST
        )
        assert out.adata.shape == (40, 30)


def test_explicit_orientation_that_agrees_is_read(tmp_path):
    path = _table(tmp_path, _genes_x_cells_csv())
    row = {"sample": "S1", "format": "delimited", "orientation": "genes_x_cells"}
    assert read_sample(path, row, params=INGEST).adata.shape == (4, 30)


# ---- the real files of ../shared/data


def test_real_geo_csv_with_wrong_orientation_is_refused(shared_data):
    path = shared_data / GEO_CSV
    row = {"sample": "CD8", "format": "delimited", "orientation": "cells_x_genes"}
    with pytest.raises(UserInputError) as err:
        read_sample(path, row, params=INGEST)
    message = _one_line(err)
    assert message.startswith(
        "sample 'CD8': `orientation` is cells_x_genes in the sample sheet, but the column labels "
        f"look like cell barcodes in {path}: read that way its cells would be 'A2M-AS1', 'AACS'"
    ), message
    assert "'CD8_off_GACCCCCCTTCT'" in message and message.endswith(
        "set `orientation` to genes_x_cells (or auto)"
    )


def test_real_truncated_geo_csv_gz_names_sample_and_file(shared_data, tmp_path):
    path = tmp_path / "GSE100866_CD8_merged-RNA_umi.csv.gz"
    shutil.copyfile(shared_data / GEO_CSV, path)
    _cut(path, 0.5)
    with pytest.raises(UserInputError) as err:
        read_sample(path, {"sample": "CD8", "format": "auto"}, params=INGEST)
    assert _one_line(err) == (
        f"sample 'CD8': {path} is truncated or corrupt (EOFError: Compressed file ended before "
        "the end-of-stream marker was reached); delete it and download or copy it again"
    )


@pytest.mark.parametrize(
    ("relative", "declared", "expected"),
    [
        (
            "cord_cbmc_cd8gated_dropseq_gse100866/cd8_merged_cord_blood.h5ad",
            "10x_h5",
            "is an h5ad (AnnData) file, not a 10x .h5 (Cell Ranger HDF5) file; set `format` to "
            "h5ad (or auto)",
        ),
        (
            "fixtures_scanpy_10x_formats/1.2.0/filtered_gene_bc_matrices_h5.h5",
            "h5ad",
            "is a 10x .h5 (Cell Ranger HDF5) file, not an h5ad (AnnData) file; set `format` to "
            "10x_h5 (or auto)",
        ),
        (
            "fixtures_scanpy_10x_formats/3.0.0/filtered_feature_bc_matrix.h5",
            "loom",
            "is a 10x .h5 (Cell Ranger HDF5) file, not a loom file; set `format` to 10x_h5 "
            "(or auto)",
        ),
    ],
)
def test_real_file_declared_as_another_format(shared_data, relative, declared, expected):
    path = shared_data / relative
    with pytest.raises(UserInputError) as err:
        read_sample(path, {"sample": "R1", "format": declared}, params=INGEST)
    assert _one_line(err) == f"sample 'R1': {path} {expected} in the sample sheet"


# ============================================================================ through Snakemake


def _dry_run_output(workdir: Path) -> str:
    result = run_snakemake(workdir, "--dry-run", "--cores", "1", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()
    return output


def test_snakemake_names_line_of_a_tab_in_config_yaml(tmp_path):
    workdir = make_workdir(tmp_path)
    config = workdir / "config/config.yaml"
    lines = config.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, start=1) if line.startswith("  nmads:"))
    lines[number - 1] = "\t" + lines[number - 1].lstrip()
    config.write_text("\n".join(lines) + "\n")
    output = _dry_run_output(workdir)
    assert (
        f"config/config.yaml line {number}, column 1: a tab character; YAML indents with spaces "
        "only, replace the tab with spaces"
    ) in output
    assert "not valid JSON or YAML" not in output


def test_snakemake_names_line_of_a_latin1_sample_sheet(tmp_path):
    workdir = make_workdir(tmp_path)
    sheet = workdir / "config/samples.tsv"
    text = sheet.read_text().replace("simulated_demo", "d\xe9mo", 1)
    sheet.write_bytes(text.encode("latin-1"))
    output = _dry_run_output(workdir)
    assert "sample sheet config/samples.tsv line 2, column " in output
    assert "is not UTF-8 (the sheet looks saved as Latin-1 or Windows-1252)" in output


def test_reliability_doc_lists_every_case():
    """docs/reliability.md shows each case's message; a new case needs its row there."""
    doc = (ROOT / "docs/reliability.md").read_text()
    cases = CONFIG_FILE_CASES + CONFIG_VALUE_CASES + SHEET_CASES + DATA_CASES
    missing = [case[0] for case in cases if f"(`{case[0]}`)" not in doc]
    assert missing == [], f"add these cases to docs/reliability.md: {missing}"
