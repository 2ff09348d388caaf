"""The config and sample-sheet schemas: defaults, and one precise message per user mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cordatlas.config import read_samples, read_schema, sample_metadata, validate_config
from cordatlas.errors import UserInputError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_SCHEMA = read_schema(ROOT / "workflow/schemas/config.schema.yaml")
SAMPLES_SCHEMA = read_schema(ROOT / "workflow/schemas/samples.schema.yaml")
CONTRAST = {"condition": "cord_blood", "reference": "adult"}
HEADER = "sample\tdonor\tcondition\ttissue\tstudy\ttechnology\tformat\tpath"


def shipped_config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def write_sheet(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "samples.tsv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD_ROWS = (
    "CB1\tCB1\tcord_blood\tcord_blood\ts1\t10x\th5ad\ta.h5ad",
    "AD1\tAD1\tadult\tperipheral_blood\ts1\t10x\th5ad\tb.h5ad",
)


def test_shipped_config_and_sheet_are_valid():
    config = validate_config(shipped_config(), CONFIG_SCHEMA)
    samples = read_samples(ROOT / config["samples"], SAMPLES_SCHEMA, contrast=config["contrast"])
    assert set(samples["condition"]) == {"cord_blood", "adult"}
    assert samples.index.is_unique


def test_every_optional_config_key_has_a_default_and_description():
    """A config may omit any optional key: the schema must say its default and meaning."""

    def walk(schema: dict, where: str) -> list[str]:
        problems = []
        required = set(schema.get("required", []))
        for key, sub in schema.get("properties", {}).items():
            if key not in required and "default" not in sub:
                problems.append(f"{where}{key}: no default")
            if sub.get("type") == "object":
                problems += walk(sub, f"{where}{key}.")
            elif "description" not in sub and not where.endswith("nmads."):
                problems.append(f"{where}{key}: no description")
        return problems

    assert walk(CONFIG_SCHEMA, "") == []


def test_shipped_config_sets_every_schema_key():
    """config/config.yaml shows every key (so each is visible and commented there)."""
    shipped = shipped_config()

    def missing(schema: dict, config: dict, where: str) -> list[str]:
        out = []
        for key, sub in schema.get("properties", {}).items():
            if key not in config:
                out.append(where + key)
            elif sub.get("type") == "object":
                out += missing(sub, config[key], f"{where}{key}.")
        return out

    assert missing(CONFIG_SCHEMA, shipped, "") == []


def test_defaults_are_filled():
    config = validate_config({"samples": "x.tsv", "contrast": CONTRAST}, CONFIG_SCHEMA)
    assert config["qc"]["nmads"]["pct_counts_mt"] == 3
    assert config["qc"]["doublets"]["remove"] is True
    assert config["atlas"]["leiden_resolutions"] == [0.5, 1.0, 2.0]


def test_unknown_config_key_is_named():
    config = shipped_config()
    config["qc"]["max_mito"] = 10
    with pytest.raises(UserInputError, match=r"qc: unknown key\(s\) \['max_mito'\]"):
        validate_config(config, CONFIG_SCHEMA)


def test_bad_enum_lists_allowed_values():
    config = shipped_config()
    config["atlas"]["integration"] = "scvi"
    with pytest.raises(UserInputError, match=r"atlas.integration: 'scvi' is not allowed.*harmony"):
        validate_config(config, CONFIG_SCHEMA)


def test_working_resolution_must_be_computed():
    config = shipped_config()
    config["atlas"]["working_resolution"] = 0.8
    with pytest.raises(UserInputError, match="working_resolution"):
        validate_config(config, CONFIG_SCHEMA)


def test_contrast_levels_must_differ():
    config = shipped_config()
    config["contrast"]["reference"] = "cord_blood"
    with pytest.raises(UserInputError, match="two different groups"):
        validate_config(config, CONFIG_SCHEMA)


def test_valid_sheet_reads_with_missing_optionals_as_na(tmp_path):
    samples = read_samples(write_sheet(tmp_path, *GOOD_ROWS), SAMPLES_SCHEMA, contrast=CONTRAST)
    assert list(samples.index) == ["CB1", "AD1"]
    assert samples["url"].isna().all()
    assert sample_metadata(samples.loc["CB1"])["sex"] == "unknown"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "CB2\tCB2\tcord_blood\tcord_blood\ts1\t10x\th6\tc.h5",
            r"line 4 \(sample 'CB2'\), column 'format': 'h6' is not allowed; use one of",
        ),
        (
            "CB 2\tCB2\tcord_blood\tcord_blood\ts1\t10x\th5ad\tc.h5ad",
            r"line 4 \(sample 'CB 2'\), column 'sample'",
        ),
        (
            "CB2\tCB2\tneonate\tcord_blood\ts1\t10x\th5ad\tc.h5ad",
            r"column 'condition': 'neonate' is not one of the contrast levels",
        ),
        (
            "CB2\t\tcord_blood\tcord_blood\ts1\t10x\th5ad\tc.h5ad",
            r"line 4 \(sample 'CB2'\): required column\(s\) \['donor'\]",
        ),
        (
            "CB2\tCB2\tcord_blood\tcord_blood\ts1\t10x\th5ad\t",
            r"give exactly one of `path` or `url` \(found neither\)",
        ),
        (
            "CB1\tCB9\tcord_blood\tcord_blood\ts1\t10x\th5ad\tc.h5ad",
            r"sample id\(s\) \['CB1'\] occur more than once",
        ),
    ],
)
def test_bad_rows_name_line_sample_and_field(tmp_path, row, message):
    sheet = write_sheet(tmp_path, *GOOD_ROWS, row)
    with pytest.raises(UserInputError, match=message):
        read_samples(sheet, SAMPLES_SCHEMA, contrast=CONTRAST)


def test_unknown_column_is_named(tmp_path):
    rows = [r + "\tx" for r in GOOD_ROWS]
    sheet = write_sheet(tmp_path, *rows, header=HEADER + "\tage")
    with pytest.raises(UserInputError, match=r"unknown column\(s\) \['age'\]"):
        read_samples(sheet, SAMPLES_SCHEMA, contrast=CONTRAST)


def test_missing_group_is_refused(tmp_path):
    sheet = write_sheet(tmp_path, GOOD_ROWS[0])
    with pytest.raises(UserInputError, match="no sample has condition 'adult'"):
        read_samples(sheet, SAMPLES_SCHEMA, contrast=CONTRAST)


def test_pooled_file_needs_barcode_patterns(tmp_path):
    header = HEADER + "\tbarcode_pattern"
    rows = [
        "CB1\tCB1\tcord_blood\tcord_blood\ts1\t10x\t10x_h5\tpool.h5\t^CB1-",
        "CB2\tCB2\tcord_blood\tcord_blood\ts1\t10x\t10x_h5\tpool.h5\t",
        "AD1\tAD1\tadult\tperipheral_blood\ts1\t10x\th5ad\tb.h5ad\t",
    ]
    with pytest.raises(UserInputError, match=r"samples \['CB2'\] share the path 'pool.h5'"):
        read_samples(write_sheet(tmp_path, *rows, header=header), SAMPLES_SCHEMA, contrast=CONTRAST)


def test_invalid_regex_and_non_numeric_threshold(tmp_path):
    header = HEADER + "\tbarcode_pattern\tmin_counts"
    rows = [
        "CB1\tCB1\tcord_blood\tcord_blood\ts1\t10x\th5ad\ta.h5ad\t([\t",
        "AD1\tAD1\tadult\tperipheral_blood\ts1\t10x\th5ad\tb.h5ad\t\t",
    ]
    with pytest.raises(UserInputError, match="not a valid regular expression"):
        read_samples(write_sheet(tmp_path, *rows, header=header), SAMPLES_SCHEMA, contrast=CONTRAST)
    rows = [
        "CB1\tCB1\tcord_blood\tcord_blood\ts1\t10x\th5ad\ta.h5ad\t\tmany",
        "AD1\tAD1\tadult\tperipheral_blood\ts1\t10x\th5ad\tb.h5ad\t\t500",
    ]
    with pytest.raises(UserInputError, match=r"column 'min_counts': 'many' is not a number"):
        read_samples(write_sheet(tmp_path, *rows, header=header), SAMPLES_SCHEMA, contrast=CONTRAST)


def test_missing_sheet_file_says_which_key(tmp_path):
    with pytest.raises(UserInputError, match="set config key `samples`"):
        read_samples(tmp_path / "nope.tsv", SAMPLES_SCHEMA, contrast=CONTRAST)


def test_samples_as_replicates_need_one_sample_per_donor():
    import pandas as pd

    from cordatlas.config import check_replicates

    sheet = pd.DataFrame({"sample": ["A1", "A2", "B1"], "donor": ["A", "A", "B"]})
    check_replicates(sheet, replicate_key="donor")  # summed per donor: fine
    with pytest.raises(UserInputError, match=r"donor 'A' has samples \['A1', 'A2'\]"):
        check_replicates(sheet, replicate_key="sample")
    check_replicates(sheet.iloc[[0, 2]], replicate_key="sample")


def test_study_dir_keeps_the_top_level_for_the_demo_alone():
    from cordatlas.study import in_study, study_dir

    assert study_dir(None, sheet="config/samples.tsv", demo_only=True) == "."
    assert study_dir(None, sheet="sheets/my_cord.tsv", demo_only=False) == "studies/my_cord"
    assert study_dir("out/x/", sheet="a.tsv", demo_only=False) == "out/x"
    assert in_study(".", "results/atlas.h5ad") == "results/atlas.h5ad"
    assert in_study("studies/a", "logs/r.log") == "studies/a/logs/r.log"
    with pytest.raises(UserInputError, match="study_dir.*demo's folder"):
        study_dir(".", sheet="mine.tsv", demo_only=False)
    with pytest.raises(UserInputError, match="set config study_dir"):
        study_dir(None, sheet="my sheet.tsv", demo_only=False)


def test_schemas_use_the_vocabulary_safe_name_pattern():
    """JSON schema cannot import Python: the patterns are written there, and must not drift."""
    from cordatlas.vocabulary import SAFE_NAME_PATTERN

    root = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
    found = []
    for name in ("config.schema.yaml", "samples.schema.yaml"):
        patterns = re.findall(r'pattern: "(.*)"', (root / name).read_text())
        found += [p for p in patterns if p.startswith("^[A-Za-z")]  # the name patterns
    assert len(found) >= 5
    assert set(found) == {f"^{SAFE_NAME_PATTERN}$"}


def _string_nodes(node: dict, path: str = ""):
    """(path, node) of every string-typed value in the schema, array items included."""
    types = node.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types:
        yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _string_nodes(sub, f"{path}.{key}".lstrip("."))
    if isinstance(node.get("items"), dict):
        yield from _string_nodes(node["items"], f"{path}[]")


def test_every_config_string_is_constrained_so_no_report_pastes_markup():
    """Config strings reach Snakemake's report raw (job params in a <script>, caption text)."""
    loose = [p for p, n in _string_nodes(CONFIG_SCHEMA) if "enum" not in n and "pattern" not in n]
    assert loose == []
    caption_keys = set()
    for caption in (ROOT / "workflow/report").glob("*.rst"):
        for match in re.finditer(r'(.{2})\{\{ snakemake\.config((?:\["\w+"\])+) \}\}(.{2})',
                                 caption.read_text(), flags=re.S):  # fmt: skip
            keys = re.findall(r'"(\w+)"', match.group(2))
            caption_keys.add(".".join(keys))
            node = CONFIG_SCHEMA
            for key in keys:
                node = node["properties"][key]
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            if {"string", "array"} & set(types):  # shown as literal text, never as reST markup
                assert (match.group(1), match.group(3)) == ("``", "``"), (caption.name, keys)
    assert "annotation.extra_panel" in caption_keys  # the test reads the captions it guards


@pytest.mark.parametrize(
    "edit, message",
    [
        (("annotation", "extra_panel", "x</script><script>alert(1)</script>.yaml"),
         "annotation.extra_panel: .* holds a character this workflow refuses in paths"),
        (("signatures", "development_reference", "ref.tsv\n.. raw:: html\n\n   <img>"),
         "signatures.development_reference: .* refuses in paths"),
        (("atlas", "integration_key", "sample_</script>"), "atlas.integration_key: .* not a valid name"),
        (("comparison", "exclude_cell_types", ["HSC`_"]), r"comparison.exclude_cell_types.0: .* not a valid name"),
        (("qc", "hb_pattern", '^HB"'), "qc.hb_pattern: .* refuses in patterns"),
    ],
)  # fmt: skip
def test_markup_in_a_config_string_is_refused_with_the_key(edit, message):
    section, key, value = edit
    config = shipped_config()
    config[section][key] = value
    with pytest.raises(UserInputError, match=message):
        validate_config(config, CONFIG_SCHEMA)


def test_config_file_reader_refuses_repeated_keys_but_not_merged_ones(tmp_path):
    """A key given twice is refused (YAML keeps the last); one merged in with `<<` is not."""
    from cordatlas.config import read_config_file

    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &base\n  nmads: 3\nqc:\n  <<: *base\n  nmads: 5\n")
    assert read_config_file(merged) == {"base": {"nmads": 3}, "qc": {"nmads": 5}}
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("qc:\n  nmads: 3\n  doublets: {}\n  nmads: 5\n")
    with pytest.raises(UserInputError, match=r"line 4, column 3: key 'nmads' is given twice"):
        read_config_file(repeated)


def test_sheet_line_numbers_count_blank_and_crlf_lines(tmp_path):
    """Errors name the line in the file, whatever blank lines or Windows line ends precede it."""
    path = tmp_path / "samples.tsv"
    bad = "CB2\tCB2\tcord_blood\tcord_blood\ts1\t10x\th6\tc.h5"
    path.write_bytes("\r\n".join([HEADER, GOOD_ROWS[0], "", "\t\t", GOOD_ROWS[1], bad]).encode())
    with pytest.raises(UserInputError, match=r"line 6 \(sample 'CB2'\), column 'format'"):
        read_samples(path, SAMPLES_SCHEMA, contrast=CONTRAST)


def test_rows_sharing_a_url_with_different_sha256_are_refused_when_the_sheet_is_read(tmp_path):
    header = HEADER.replace("\tpath", "\turl\tsha256\tbarcode_pattern")
    url = "https://example.org/pooled.h5"
    rows = (
        f"CB1\tCB1\tcord_blood\tcord_blood\ts1\t10x\t10x_h5\t{url}\t{'a' * 64}\t^CB1_",
        f"AD1\tAD1\tadult\tperipheral_blood\ts1\t10x\t10x_h5\t{url}\t{'b' * 64}\t^AD1_",
    )
    sheet = write_sheet(tmp_path, *rows, header=header)
    with pytest.raises(UserInputError, match=r"rows sharing url .* give different sha256 "
                                             r"\(CB1: a+, AD1: b+\)"):  # fmt: skip
        read_samples(sheet, SAMPLES_SCHEMA, contrast=CONTRAST)
