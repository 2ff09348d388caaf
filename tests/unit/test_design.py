"""Design checks: aliasing of condition with technical factors, replication, integration key."""

from __future__ import annotations

import pandas as pd

from cordatlas.design import aliased_factors, check_design, mark_confounded, read_aliased_factors

CONTRAST = ("cord_blood", "adult")


def sheet(**columns) -> pd.DataFrame:
    base = {
        "sample": ["CB1", "CB2", "AD1", "AD2"],
        "donor": ["CB1", "CB2", "AD1", "AD2"],
        "condition": ["cord_blood", "cord_blood", "adult", "adult"],
        "study": ["s1", "s1", "s1", "s1"],
        "technology": ["10x", "10x", "10x", "10x"],
        "tissue": ["cord_blood", "cord_blood", "peripheral_blood", "peripheral_blood"],
    }
    base.update(columns)
    return pd.DataFrame(base)


def warnings_of(check) -> list[str]:
    return check.findings.query("severity == 'warning'")["topic"].tolist()


def test_balanced_design_raises_no_warning():
    check = check_design(
        sheet(study=["s1", "s2", "s1", "s2"]), contrast=CONTRAST, batch_key="study"
    )
    assert warnings_of(check) == []
    counts = check.table.query("factor == 'donor_count'").set_index("condition")["n_donors"]
    assert counts.to_dict() == {"adult": 2, "cord_blood": 2}


def test_condition_aliased_with_study_and_technology_is_warned():
    check = check_design(
        sheet(study=["GSE1", "GSE1", "ZHENG", "ZHENG"], technology=["dropseq"] * 2 + ["10x"] * 2),
        contrast=CONTRAST,
        batch_key="study",
    )
    topics = warnings_of(check)
    assert "aliasing:study" in topics and "aliasing:technology" in topics
    assert "integration" in topics  # integrating on study removes the difference
    message = check.findings.set_index("topic").loc["aliasing:technology", "message"]
    assert "every cord_blood sample has technology ['dropseq']" in message
    assert "Still valid" in message


def test_one_donor_per_group_is_flagged_as_unreplicated():
    check = check_design(
        sheet(donor=["CBx", "CBx", "AD1", "AD2"]), contrast=CONTRAST, batch_key="sample"
    )
    assert warnings_of(check) == ["replication:cord_blood"]


def test_sample_key_nested_in_condition_is_an_info_not_a_warning():
    check = check_design(sheet(), contrast=CONTRAST, batch_key="sample")
    info = check.findings.query("severity == 'info'")["topic"].tolist()
    assert "integration" in info
    assert "integration" not in warnings_of(check)


def test_tissue_differing_by_construction_is_an_info():
    # cord blood vs adult peripheral blood: tissue differs with condition by construction
    check = check_design(sheet(), contrast=CONTRAST, batch_key=None)
    assert warnings_of(check) == []
    assert "tissue" in check.findings["topic"].tolist()


def test_aliasing_found_by_the_check_relabels_a_results_table(tmp_path):
    check = check_design(
        sheet(technology=["dropseq", "dropseq", "10x", "10x"]), contrast=CONTRAST, batch_key=None
    )
    path = tmp_path / "design_findings.tsv"
    check.findings.to_csv(path, sep="\t", index=False)
    aliased = read_aliased_factors(str(path))
    assert aliased == ["technology"]
    table = pd.DataFrame(
        {
            "cell_type": ["NK", "B", "HSC"],
            "evidence": ["donor_level", "exploratory_no_replication", "not_testable"],
            "note": ["", "one cord donor", "1 donor"],
        }
    )
    marked = mark_confounded(table, aliased)
    assert marked["evidence"].tolist() == ["confounded"] * 3
    assert marked["note"].tolist() == [
        "condition aliased with technology (table's label: donor_level)",
        "condition aliased with technology (table's label: exploratory_no_replication); "
        "one cord donor",
        "condition aliased with technology (table's label: not_testable); 1 donor",
    ]
    assert table["evidence"].iloc[0] == "donor_level"  # the input is not modified
    # marking twice changes nothing; no aliasing leaves the table as it was
    assert mark_confounded(marked, aliased).equals(marked)
    assert mark_confounded(table, []).equals(table)
    # a DE table has no note column: only the label changes
    de = mark_confounded(table.drop(columns="note"), aliased)
    assert list(de.columns) == ["cell_type", "evidence"]
    assert set(de["evidence"]) == {"confounded"}


def test_a_balanced_design_relabels_nothing(tmp_path):
    check = check_design(sheet(), contrast=CONTRAST, batch_key=None)
    assert aliased_factors(check.findings) == []
    assert read_aliased_factors(None) == []


def test_numeric_covariates_are_checked_for_aliasing_and_overlap():
    def finding(values):
        check = check_design(
            sheet(hours=values), contrast=CONTRAST, batch_key=None, numeric_covariates=["hours"]
        )
        rows = check.findings.set_index("topic")
        assert "covariate:hours" in rows.index, check.findings
        return rows.loc["covariate:hours"]

    aliased = finding([2, 2, 30, 30])
    assert aliased["severity"] == "warning"
    assert "one value per condition (cord_blood 2; adult 30)" in aliased["message"]
    gap = finding([0, 1, 20, 40])
    assert gap["severity"] == "warning"
    assert "does not overlap" in gap["message"] and "adult 20 to 40" in gap["message"]
    overlap = finding([2, 10, 5, 20])
    assert overlap["severity"] == "info" and "overlaps" in overlap["message"]
    # not the aliasing of a factor: no results table is relabelled confounded
    assert aliased_factors(pd.DataFrame([aliased.to_dict() | {"topic": "covariate:hours"}])) == []
    # a covariate the sheet lacks is skipped; none given, none checked
    check = check_design(sheet(), contrast=CONTRAST, batch_key=None, numeric_covariates=["age"])
    assert not check.findings["topic"].str.startswith("covariate:").any()
