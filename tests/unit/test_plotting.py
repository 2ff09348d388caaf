"""The plotting base: one backend, one save helper, and one palette in every figure.

Each figure function runs on a small synthetic input; the saved figure is captured (the real
``save`` still writes it) and its artists are read back, so the tests see the colours a
reader sees.
"""

from __future__ import annotations

import colorsys
import re
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex, to_rgb

from cordatlas import vocabulary
from cordatlas.plotting import atlas, base, composition, de, enrichment, qc, signatures
from cordatlas.plotting.atlas import drawing_order, plot_umap
from cordatlas.plotting.composition import plot_composition
from cordatlas.plotting.de import plot_de_heatmap, plot_volcano
from cordatlas.plotting.signatures import plot_development_axis, plot_signature_by_donor

CONTRAST = ("cord_blood", "adult")
CONDITION = to_hex(vocabulary.CONDITION_COLOUR)
REFERENCE = to_hex(vocabulary.REFERENCE_COLOUR)
PLOTTING = Path(base.__file__).parent
SCRIPTS = PLOTTING.parents[1]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list:
    """Every figure saved while the test runs (the real save still writes the file)."""
    saved: list = []
    real_save = base.save

    def capture(fig, path, **options):
        saved.append(fig)
        real_save(fig, path, **options)
        assert Path(path).stat().st_size > 1000

    for module in (base, atlas, qc, de, composition, enrichment, signatures):
        if hasattr(module, "save"):
            monkeypatch.setattr(module, "save", capture)
    yield saved
    plt.close("all")


def _hex(colour) -> str:
    return to_hex(colour, keep_alpha=False)


def _points(ax) -> list[PathCollection]:
    """The non-empty scatter collections on `ax` (not lines drawn as collections, not the
    empty scatters scanpy adds for its legend)."""
    return [
        coll
        for coll in ax.collections
        if isinstance(coll, PathCollection) and len(coll.get_offsets())
    ]


def _collection_colours(ax) -> set[str]:
    """Face colours of every point collection on `ax`."""
    return {_hex(c) for coll in _points(ax) for c in coll.get_facecolors()}


def _legend_colours(ax) -> dict[str, str]:
    """Label -> face colour of each handle in the axes' legend."""
    legend = ax.get_legend()
    assert legend is not None
    handles = legend.legend_handles
    labels = [t.get_text() for t in legend.get_texts()]
    return {
        label: _hex(h.get_facecolor()[0] if np.ndim(h.get_facecolor()) == 2 else h.get_facecolor())
        for label, h in zip(labels, handles, strict=True)
    }


def _colours_by_x(ax) -> dict[int, set[str]]:
    """Face colours of scatter points, grouped by the nearest integer x position."""
    found: dict[int, set[str]] = {}
    for coll in _points(ax):
        offsets = coll.get_offsets()
        colours = coll.get_facecolors()
        if len(offsets) == 0 or len(colours) == 0:
            continue
        for i, (x, _) in enumerate(np.asarray(offsets)):
            colour = colours[i % len(colours)]
            found.setdefault(round(float(x)), set()).add(_hex(colour))
    return found


# --------------------------------------------------------------------------------------------
# Synthetic inputs
# --------------------------------------------------------------------------------------------


def _umap_atlas() -> ad.AnnData:
    """120 cells, 4 donors (D1 with two samples), two conditions, panel and other labels."""
    rng = np.random.default_rng(0)
    samples = {"S1a": "D1", "S1b": "D1", "S2": "D2", "S3": "D3", "S4": "D4"}
    condition = {"D1": "cord_blood", "D2": "cord_blood", "D3": "adult", "D4": "adult"}
    types = ["CD14_monocyte", "NK_CD56dim", "B_naive", "my_own_type", vocabulary.UNASSIGNED]
    sample = np.repeat(list(samples), 24)
    obs = pd.DataFrame(
        {
            "sample": sample,
            "donor": [samples[s] for s in sample],
            "condition": [condition[samples[s]] for s in sample],
            "cell_type": np.tile(types, 24),
            "leiden": np.tile(["0", "1", "2"], 40),
        },
        index=[f"c{i}" for i in range(len(sample))],
    )
    adata = ad.AnnData(np.zeros((len(obs), 3), dtype=np.float32), obs=obs)
    adata.obsm["X_umap"] = rng.normal(size=(len(obs), 2))
    return adata


def _de_results(n_genes: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    lfc = rng.normal(0, 1, n_genes)
    lfc[:5], lfc[5:10] = 3.0, -3.0  # planted hits both ways
    pvalue = np.where(np.abs(lfc) >= 3, 1e-8, rng.uniform(0.2, 1, n_genes))
    return pd.DataFrame(
        {
            "gene": [f"G{i}" for i in range(n_genes)],
            "log2FC": lfc,
            "pvalue": pvalue,
            "padj": np.minimum(pvalue * n_genes, 1.0),
            "evidence": vocabulary.DONOR_LEVEL,
        }
    )


def _pseudobulk(n_genes: int = 40) -> ad.AnnData:
    rng = np.random.default_rng(2)
    donors = [f"D{i}" for i in range(6)]
    obs = pd.DataFrame(
        {
            "cell_type": "NK_CD56dim",
            "donor": donors,
            "condition": ["adult", "cord_blood"] * 3,
            "n_cells": 50,
        },
        index=[f"NK_{d}" for d in donors],
    )
    counts = rng.poisson(30, size=(len(obs), n_genes)).astype(np.float32)
    return ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]))


def _composition_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for k, donor in enumerate([f"D{i}" for i in range(6)]):
        cond = CONTRAST[k % 2]
        for cell_type, share in (("CD14_monocyte", 0.3), ("NK_CD56dim", 0.7)):
            rows.append((donor, cond, cell_type, share + 0.02 * k))
    proportions = pd.DataFrame(rows, columns=["donor", "condition", "cell_type", "proportion"])
    tests = pd.DataFrame(
        {
            "cell_type": ["CD14_monocyte", "NK_CD56dim"],
            "padj": [0.01, 0.4],
            "evidence": vocabulary.DONOR_LEVEL,
            "transform": "clr",
            "presence": "both",
        }
    )
    return proportions, tests


def _signature_summary() -> pd.DataFrame:
    rows = []
    for k, donor in enumerate([f"D{i}" for i in range(6)]):
        cond = CONTRAST[k % 2]
        for signature in ("fetal_programme", "dissociation_stress"):
            rows.append((donor, cond, "HSC_MPP", signature, 0.1 * k, 30))
    return pd.DataFrame(
        rows, columns=["donor", "condition", "cell_type", "signature", "mean_score", "n_cells"]
    )


def _development_axis() -> pd.DataFrame:
    rows = []
    conditions = [*CONTRAST, "newborn"]
    for k, donor in enumerate([f"D{i}" for i in range(6)]):
        for cell_type in ("HSC_MPP", "B_naive"):
            rows.append((donor, conditions[k % 3], cell_type, 0.3 * k, "relative_to_reference"))
    return pd.DataFrame(rows, columns=["donor", "condition", "cell_type", "axis_score", "method"])


# --------------------------------------------------------------------------------------------
# The palette: conditions
# --------------------------------------------------------------------------------------------


def test_umap_condition_panel_uses_the_vocabulary_colours(figures, tmp_path):
    adata = _umap_atlas()
    plot_umap(adata, keys=["condition"], path=tmp_path / "umap.png", contrast=CONTRAST)
    (ax,) = figures[0].axes
    assert _legend_colours(ax) == {"cord_blood": CONDITION, "adult": REFERENCE}
    assert _collection_colours(ax) == {CONDITION, REFERENCE}


def test_umap_without_a_contrast_uses_the_default_contrast(figures, tmp_path):
    plot_umap(_umap_atlas(), keys=["condition"], path=tmp_path / "umap.png")
    (ax,) = figures[0].axes
    assert _legend_colours(ax) == {"cord_blood": CONDITION, "adult": REFERENCE}


def test_de_heatmap_condition_bar_uses_the_vocabulary_colours(figures, tmp_path):
    plot_de_heatmap(
        _pseudobulk(),
        _de_results(),
        cell_type="NK_CD56dim",
        path=tmp_path / "heatmap.png",
        contrast=CONTRAST,
    )
    bar = figures[0].axes[0]
    assert _legend_colours(bar) == {"cord_blood": CONDITION, "adult": REFERENCE}
    (image,) = bar.get_images()
    drawn = {_hex(image.cmap(image.norm(v))) for v in np.unique(image.get_array())}
    assert drawn == {CONDITION, REFERENCE}
    # cord blood first (contrast order), in the condition colour
    assert _hex(image.cmap(image.norm(image.get_array()[0, 0]))) == CONDITION


def test_de_heatmap_without_a_contrast_still_colours_conditions_alike(figures, tmp_path):
    plot_de_heatmap(
        _pseudobulk(), _de_results(), cell_type="NK_CD56dim", path=tmp_path / "heatmap.png"
    )
    assert _legend_colours(figures[0].axes[0]) == {"adult": REFERENCE, "cord_blood": CONDITION}


def test_volcano_colours_hits_by_the_condition_they_are_higher_in(figures, tmp_path):
    results = _de_results()
    plot_volcano(results, path=tmp_path / "volcano.png", title="NK_CD56dim")
    (ax,) = figures[0].axes
    seen: set[str] = set()
    for coll in _points(ax):
        colours = coll.get_facecolors()
        for (x, _), colour in zip(np.asarray(coll.get_offsets()), colours, strict=True):
            colour = _hex(colour)
            seen.add(colour)
            if colour == CONDITION:
                assert x > 0  # higher in the condition
            if colour == REFERENCE:
                assert x < 0  # higher in the reference
    assert seen == {CONDITION, REFERENCE, _hex("0.7")}


def test_composition_points_use_the_vocabulary_colours(figures, tmp_path):
    proportions, tests = _composition_inputs()
    plot_composition(proportions, tests, path=tmp_path / "composition.png", contrast=CONTRAST)
    panels = [ax for ax in figures[0].axes if ax.collections]
    assert len(panels) == 2
    for ax in panels:
        assert _colours_by_x(ax) == {0: {CONDITION}, 1: {REFERENCE}}
        assert [t.get_text() for t in ax.get_xticklabels()] == list(CONTRAST)


def test_signature_donor_strips_use_the_vocabulary_colours(figures, tmp_path):
    plot_signature_by_donor(
        _signature_summary(),
        signature="fetal_programme",
        control="dissociation_stress",
        path=tmp_path / "donors.png",
        contrast=CONTRAST,
    )
    panels = [ax for ax in figures[0].axes if ax.collections]
    assert len(panels) == 1  # one facet per cell type: the signature (x 0, 1), the control (x 3, 4)
    (ax,) = panels
    assert _colours_by_x(ax) == {0: {CONDITION}, 1: {REFERENCE}, 3: {CONDITION}, 4: {REFERENCE}}
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    means = {_hex(c) for coll in lines for c in coll.get_colors()}
    assert means == {CONDITION, REFERENCE}


def _assert_on_its_canvas(fig) -> None:
    """Every title, label and legend inside the canvas (an uncropped save cuts what is not)."""
    content = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer())  # inches
    width, height = fig.get_size_inches()
    assert content.x0 >= 0 and content.y0 >= 0
    assert content.x1 <= width and content.y1 <= height
    assert fig.get_size_inches()[0] * base.DPI <= base.MAX_WIDTH_PX


def test_uncropped_signature_donor_figure_keeps_everything_on_its_canvas(figures, tmp_path):
    """The per-donor figure is saved without a crop: every title, label and legend must lie
    inside the canvas, with many facets (wrapped rows), long titles and a control beside."""
    rows = []
    cell_types = [f"cell_type_with_a_long_name_{k}" for k in range(12)]
    for k, donor in enumerate([f"D{i}" for i in range(8)]):
        for cell_type in cell_types:
            for signature in ("fetal_programme", "dissociation_stress"):
                rows.append((donor, CONTRAST[k % 2], cell_type, signature, 0.1 * k, 30))
    summary = pd.DataFrame(
        rows, columns=["donor", "condition", "cell_type", "signature", "mean_score", "n_cells"]
    )
    plot_signature_by_donor(
        summary,
        signature="fetal_programme",
        control="dissociation_stress",
        path=tmp_path / "donors.png",
        contrast=CONTRAST,
    )
    (fig,) = figures
    _assert_on_its_canvas(fig)


def test_uncropped_qc_sample_figure_keeps_everything_on_its_canvas(figures, tmp_path):
    """The per-sample QC figure is saved without a crop: its titles (bounds, the hb-rich line,
    the doublet note), labels and legend must lie inside the canvas."""
    from tests.unit.test_qc import make_sample, run_qc, with_doublets

    result = run_qc(with_doublets(make_sample(n_cells=400, n_damaged=20, n_empty=10), 30))
    qc.plot_qc_sample(
        result.cells, result.thresholds, sample="sample_with_a_long_name", path=tmp_path / "q.png"
    )
    (fig,) = figures
    _assert_on_its_canvas(fig)


def test_development_axis_uses_the_vocabulary_colours(figures, tmp_path):
    plot_development_axis(_development_axis(), path=tmp_path / "axis.png", contrast=CONTRAST)
    (ax,) = figures[0].axes
    assert _legend_colours(ax) == {
        "cord_blood": CONDITION,
        "adult": REFERENCE,
        "newborn": to_hex(vocabulary.OTHER_COLOUR),
    }


def test_every_condition_figure_uses_the_same_two_colours(figures, tmp_path):
    """One palette: the condition colours of all figures, collected, are exactly the two."""
    proportions, tests = _composition_inputs()
    plot_umap(_umap_atlas(), keys=["condition"], path=tmp_path / "u.png", contrast=CONTRAST)
    plot_de_heatmap(_pseudobulk(), _de_results(), cell_type="NK_CD56dim", path=tmp_path / "h.png")
    plot_composition(proportions, tests, path=tmp_path / "c.png", contrast=CONTRAST)
    plot_signature_by_donor(
        _signature_summary(), signature="fetal_programme", control=None, path=tmp_path / "s.png"
    )
    plot_development_axis(
        _development_axis().query("condition != 'newborn'"), path=tmp_path / "d.png"
    )
    umap, heatmap, comp, donors, axis = figures
    seen = {
        "umap": _legend_colours(umap.axes[0]),
        "heatmap": _legend_colours(heatmap.axes[0]),
        "development": _legend_colours(axis.axes[0]),
    }
    for name, mapping in seen.items():
        assert mapping == {"cord_blood": CONDITION, "adult": REFERENCE}, name
    for fig in (comp, donors):
        for ax in (a for a in fig.axes if a.collections):
            assert _colours_by_x(ax) == {0: {CONDITION}, 1: {REFERENCE}}


# --------------------------------------------------------------------------------------------
# The palette: cell types, donors and samples
# --------------------------------------------------------------------------------------------


def test_umap_cell_types_use_the_fixed_cell_type_colours(figures, tmp_path):
    adata = _umap_atlas()
    plot_umap(adata, keys=["cell_type"], path=tmp_path / "umap.png")
    (ax,) = figures[0].axes
    colours = _legend_colours(ax)
    assert set(colours) == set(adata.obs["cell_type"].astype(str))
    for label, colour in colours.items():
        assert colour == to_hex(vocabulary.cell_type_colour(label)), label
    assert colours[vocabulary.UNASSIGNED] == to_hex(vocabulary.MISSING_COLOUR)
    assert colours["CD14_monocyte"] == to_hex(vocabulary.CELL_TYPE_COLOURS["CD14_monocyte"])


def _hue(colour: str) -> float:
    return colorsys.rgb_to_hsv(*to_rgb(colour))[0]


def test_umap_donor_and_sample_panels_colour_a_sample_alike(figures, tmp_path):
    adata = _umap_atlas()
    plot_umap(adata, keys=["leiden", "condition", "donor", "sample"], path=tmp_path / "umap.png")
    axes = dict(zip(["leiden", "condition", "donor", "sample"], figures[0].axes, strict=True))
    donors, samples = _legend_colours(axes["donor"]), _legend_colours(axes["sample"])
    donor_of = dict(
        zip(adata.obs["sample"].astype(str), adata.obs["donor"].astype(str), strict=True)
    )
    assert set(samples) == set(donor_of)
    # a donor's only (and first) sample: exactly the donor's colour in both panels
    for sample in ("S1a", "S2", "S3", "S4"):
        assert samples[sample] == donors[donor_of[sample]], sample
    # every sample keeps its donor's hue; the donor's second sample is a lighter shade
    for sample, colour in samples.items():
        assert _hue(colour) == pytest.approx(_hue(donors[donor_of[sample]]), abs=0.02), sample
    assert samples["S1b"] != samples["S1a"]
    assert len(set(donors.values())) == len(donors)
    # cell by cell: the two panels agree wherever the donor has one sample
    donor_points = axes["donor"].collections[0].get_facecolors()
    sample_points = axes["sample"].collections[0].get_facecolors()
    single = (adata.obs["donor"] != "D1").to_numpy()[drawing_order(adata.n_obs)]
    assert len(donor_points) == len(sample_points) == adata.n_obs
    assert [_hex(c) for c in donor_points[single]] == [_hex(c) for c in sample_points[single]]
    # the condition panel in the same figure uses the condition colours
    assert _legend_colours(axes["condition"]) == {"cord_blood": CONDITION, "adult": REFERENCE}


def test_sample_palettes_without_donors_or_samples():
    obs = pd.DataFrame({"sample": ["b", "a", "a"]})
    donors, samples = base.sample_palettes(obs)
    assert donors == {} and list(samples) == ["a", "b"]
    assert len(set(samples.values())) == 2
    donors, samples = base.sample_palettes(pd.DataFrame({"donor": ["x", "y"]}))
    assert list(donors) == ["x", "y"] and samples == {}
    many = pd.DataFrame({"donor": [f"D{i:02d}" for i in range(40)]})
    donors, _ = base.sample_palettes(many)
    assert len(set(donors.values())) == 40


# --------------------------------------------------------------------------------------------
# One base: backend, save, empty figures, p-values
# --------------------------------------------------------------------------------------------


def _python_sources() -> list[Path]:
    return sorted(p for p in SCRIPTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_backend_is_set_only_in_the_base():
    setting = re.compile(r"matplotlib\.use\(|\.switch_backend\(")
    where = [p for p in _python_sources() if setting.search(p.read_text())]
    assert where == [PLOTTING / "base.py"]


def test_figures_are_written_only_by_the_save_helper():
    modules = sorted(PLOTTING.glob("*.py"))
    assert {p.name for p in modules} >= {
        "base.py",
        "qc.py",
        "atlas.py",
        "de.py",
        "composition.py",
        "enrichment.py",
        "signatures.py",
    }
    for path in modules:
        text = path.read_text()
        if path.name != "base.py":
            assert "savefig(" not in text, path.name
            assert "matplotlib.use" not in text, path.name
        assert "def _message_figure" not in text, path.name
        assert "def _format_p" not in text, path.name
        assert not re.search(r"#[0-9a-fA-F]{6}", text) or path.name == "base.py", path.name


def test_format_pvalue_is_the_vocabulary_one():
    assert base.format_pvalue is vocabulary.format_pvalue


def test_message_figure_writes_a_figure_saying_why(figures, tmp_path):
    path = tmp_path / "empty.png"
    base.message_figure(path, "nothing to show", title="A title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty_composition = tmp_path / "composition.png"
    proportions, tests = _composition_inputs()
    plot_composition(
        proportions.iloc[:0], tests.iloc[:0], path=empty_composition, contrast=CONTRAST
    )
    assert empty_composition.stat().st_size > 1000
    assert any("No cell-type proportions" in t.get_text() for t in figures[-1].axes[0].texts)


def test_save_closes_the_figure(tmp_path):
    fig, _ = plt.subplots()
    base.save(fig, tmp_path / "f.png")
    assert not plt.fignum_exists(fig.number)
    assert (tmp_path / "f.png").stat().st_size > 0


def test_umap_draws_cells_in_random_order_not_condition_by_condition(figures, tmp_path):
    """The sheet lists cord donors first; the panel must not paint adult cells over all of them."""
    adata = _umap_atlas()
    plot_umap(adata, keys=["condition"], path=tmp_path / "umap.png", contrast=CONTRAST)
    drawn = [_hex(c) for c in figures[0].axes[0].collections[0].get_facecolors()]
    assert len(drawn) == adata.n_obs
    half = adata.n_obs // 2
    assert set(drawn[:half]) == set(drawn[half:]) == {CONDITION, REFERENCE}
    expected = adata.obs["condition"].to_numpy()[drawing_order(adata.n_obs)]
    colour = {"cord_blood": CONDITION, "adult": REFERENCE}
    assert drawn == [colour[c] for c in expected]


# --------------------------------------------------------------------------------------------
# Figures a reviewer reads at 1280 px: size, grey where untestable, no collisions, no "nan"
# --------------------------------------------------------------------------------------------

PANEL_TYPES = list(vocabulary.CELL_TYPE_COLOURS)[:17]


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header."""
    header = Path(path).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def _many_types_summary(n_types: int = 17) -> pd.DataFrame:
    """Donor means of a signature and the control in `n_types` cell types (8 donors)."""
    rng = np.random.default_rng(3)
    rows = []
    for cell_type in PANEL_TYPES[:n_types]:
        for k in range(8):
            for signature in ("cytotoxicity", "stress_processing_delay"):
                score = rng.normal(0.3 if k % 2 == 0 else 0.0, 0.05)
                rows.append((f"D{k}", CONTRAST[k % 2], cell_type, signature, score, 30))
    return pd.DataFrame(
        rows, columns=["donor", "condition", "cell_type", "signature", "mean_score", "n_cells"]
    )


def _signature_results(summary: pd.DataFrame, untestable: set[str]) -> pd.DataFrame:
    """A signature_tests-like table; the `untestable` cell types keep a finite difference (as
    the real table does with 4 vs 1 donors) but no p-value."""
    rows = []
    for (cell_type, signature), part in summary.groupby(["cell_type", "signature"], sort=False):
        means = part.groupby("condition")["mean_score"].mean()
        testable = cell_type not in untestable
        rows.append(
            {
                "cell_type": cell_type,
                "signature": signature,
                "role": "control" if signature == "stress_processing_delay" else "biological",
                "difference": float(means[CONTRAST[0]] - means[CONTRAST[1]]),
                "pvalue": 1e-4 if testable else np.nan,
                "padj": 1e-3 if testable else np.nan,
                "concordance": "agree" if testable else "not_testable",
                "evidence": vocabulary.DONOR_LEVEL if testable else vocabulary.NOT_TESTABLE,
            }
        )
    return pd.DataFrame(rows)


def _all_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(plt.Text)]


def test_signature_donor_figure_fits_one_screen_at_1280_px(figures, tmp_path):
    """17 cell types (the demo's): facets wrap, so the figure is no longer 748 x 4301 px."""
    summary = _many_types_summary()
    path = tmp_path / "donors.png"
    plot_signature_by_donor(
        summary, signature="cytotoxicity", path=path, results=_signature_results(summary, set())
    )
    width, height = _png_size(path)
    assert 900 <= width <= base.MAX_WIDTH_PX
    assert height <= 1100
    facets = [ax for ax in figures[0].axes if ax.collections]
    assert len(facets) == 17
    titles = [ax.get_title() for ax in facets]
    assert [t.splitlines()[0] for t in titles] == PANEL_TYPES  # full names, never cut
    assert all("control: diff" in t for t in titles)


def test_signature_donor_titles_say_not_testable_never_nan(figures, tmp_path):
    summary = _many_types_summary(3)
    untestable = {PANEL_TYPES[0]}
    results = _signature_results(summary, untestable)
    # the real table: a finite difference, no p-value, for a type with too few donors
    assert np.isfinite(results.loc[results["cell_type"] == PANEL_TYPES[0], "difference"]).all()
    plot_signature_by_donor(
        summary, signature="cytotoxicity", path=tmp_path / "d.png", results=results
    )
    texts = _all_texts(figures[0])
    assert not [t for t in texts if re.search(r"\bnan\b|\bNA\b", t, flags=re.IGNORECASE)]
    facets = {
        ax.get_title().splitlines()[0]: ax.get_title() for ax in figures[0].axes if ax.collections
    }
    assert facets[PANEL_TYPES[0]].splitlines()[1:] == ["not testable", "control: not testable"]
    assert facets[PANEL_TYPES[1]].splitlines()[1].startswith("diff +")
    assert signatures.result_text(results, PANEL_TYPES[0], "cytotoxicity") == "not testable"


def test_signature_donor_points_are_centred_on_the_reference(figures, tmp_path):
    summary = _signature_summary()
    values, on_reference = signatures.centred_scores(
        summary[summary["signature"] == "fetal_programme"], "adult"
    )
    adult = (
        summary.loc[summary["signature"] == "fetal_programme", "condition"] == "adult"
    ).to_numpy()
    assert on_reference and values[adult].mean() == pytest.approx(0.0)
    without = summary[
        (summary["signature"] == "fetal_programme") & (summary["condition"] != "adult")
    ]
    values, on_reference = signatures.centred_scores(without, "adult")
    assert not on_reference and values.mean() == pytest.approx(0.0)


def _canvas(fig) -> FigureCanvasAgg:
    """An Agg canvas for a figure the save helper has closed (drawn, as it was saved)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas


def _renderer(fig):
    return _canvas(fig).get_renderer()


def _pixel(fig, ax, x: float, y: float) -> str:
    """The colour a reader sees at data point (x, y) of `ax`."""
    image = np.asarray(_canvas(fig).buffer_rgba())
    px, py = ax.transData.transform((x, y))
    row = image.shape[0] - int(round(py))
    return to_hex(image[row, int(round(px)), :3] / 255)


def test_signature_heatmap_paints_untestable_cells_grey(figures, tmp_path):
    summary = _many_types_summary(4)
    untestable = {PANEL_TYPES[1]}
    results = _signature_results(summary, untestable)
    signatures.plot_signature_heatmap(results, path=tmp_path / "heatmap.png", contrast=CONTRAST)
    fig = figures[0]
    ax = fig.axes[0]
    grey = to_hex(vocabulary.MISSING_COLOUR)
    # off the cell centre, where marks are drawn
    for j, cell_type in enumerate(PANEL_TYPES[:4]):
        for i in range(2):
            seen = _pixel(fig, ax, j + 0.3, i + 0.3)
            assert (seen == grey) == (cell_type in untestable), (cell_type, i, seen)
    (legend,) = [ax.get_legend()]
    assert [t.get_text() for t in legend.get_texts()] == ["not testable"]
    assert _hex(legend.legend_handles[0].get_facecolor()) == grey


def test_volcano_labels_never_overlap(figures, tmp_path):
    """Neighbouring hits (HBG1 beside HBG2, PRF1 beside GZMB) get labels apart from each other."""
    results = _de_results(200)
    planted = {"HBG1": (3.05, 1e-49), "HBG2": (3.3, 3e-50), "PRF1": (-1.75, 3e-13),
               "GZMB": (-1.5, 5e-13), "GNLY": (-1.7, 1e-21), "NKG7": (-1.2, 2e-9)}  # fmt: skip
    for k, (gene, (lfc, p)) in enumerate(planted.items()):
        results.loc[k, ["gene", "log2FC", "pvalue", "padj"]] = [gene, lfc, p, p * 10]
    plot_volcano(results, path=tmp_path / "volcano.png", title="erythroid", n_labels=12)
    fig = figures[0]
    (ax,) = fig.axes
    renderer = _renderer(fig)
    labels = [t for t in ax.texts if t.get_text() and t.get_visible()]
    names = {t.get_text() for t in labels}
    assert set(planted) <= names
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (labels[i].get_text(), boxes.index(b))
    frame = ax.get_window_extent(renderer)
    for box in boxes:
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1


def test_development_axis_label_fits_beside_the_axes(figures, tmp_path):
    for method in ("relative_to_reference", "reference_projection"):
        axis = _development_axis().assign(method=method)
        plot_development_axis(axis, path=tmp_path / f"{method}.png", contrast=CONTRAST)
        fig = figures[-1]
        ax = fig.axes[0]
        renderer = _renderer(fig)
        label = ax.yaxis.label.get_window_extent(renderer)
        assert label.height <= ax.get_window_extent(renderer).height, method
        assert 0 <= label.y0 and label.y1 <= fig.bbox.height, method


def test_development_axis_says_where_a_type_has_no_values(figures, tmp_path):
    axis = _development_axis()
    axis = pd.concat(
        [
            axis,
            pd.DataFrame(
                {
                    "donor": ["D9"],
                    "condition": ["cord_blood"],
                    "cell_type": ["ILC"],
                    "axis_score": [np.nan],
                    "method": ["relative_to_reference"],
                    "scale": ["no_reference_replicates"],
                }
            ),
        ]  # fmt: skip
    )
    plot_development_axis(axis, path=tmp_path / "axis.png", contrast=CONTRAST)
    texts = _all_texts(figures[0])
    assert any(t.startswith("no values\n(no_reference_replicates)") for t in texts)


def _enrichment_results(n_types: int = 17, n_sets: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for cell_type in PANEL_TYPES[:n_types]:
        for k in range(n_sets):
            p = float(rng.uniform(1e-6, 1))
            rows.append(
                {
                    "cell_type": cell_type,
                    "gene_set": f"immune_regulatory_mediators_{k}",
                    "auc": float(rng.uniform(0.2, 0.8)),
                    "pvalue": p,
                    "padj": min(1.0, p * 5),
                    "evidence": vocabulary.EXPLORATORY
                    if cell_type == "HSC_MPP"
                    else vocabulary.DONOR_LEVEL,
                }
            )
    return pd.DataFrame(rows)


def test_enrichment_title_and_colour_bar_label_are_not_cut(figures, tmp_path):
    path = tmp_path / "enrichment.png"
    enrichment.plot_enrichment(_enrichment_results(), path=path)
    width, _ = _png_size(path)
    assert width <= base.MAX_WIDTH_PX
    fig = figures[0]
    ax, bar = fig.axes[:2]
    renderer = _renderer(fig)
    title = ax.title.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= fig.bbox.width
    label = bar.yaxis.label.get_window_extent(renderer)
    assert label.height <= bar.get_window_extent(renderer).height
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == "HSC_MPP *" and ticks[1] == PANEL_TYPES[1]


def _dot_atlas(n_groups: int = 17, n_cells: int = 20) -> ad.AnnData:
    rng = np.random.default_rng(5)
    genes = [f"G{i}" for i in range(120)]
    labels = np.repeat(PANEL_TYPES[:n_groups], n_cells)
    values = rng.poisson(0.5, size=(len(labels), len(genes))).astype(np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels, categories=PANEL_TYPES[:n_groups])})
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.log1p(values), obs=obs, var=pd.DataFrame(index=genes))


def test_dot_plots_wrap_to_1280_px(figures, tmp_path):
    """The demo's dot plots were 3003 and 2408 px wide; 26 clusters x 3 and 17 types x 6 wrap."""
    adata = _dot_atlas()
    panel = {t: [f"G{6 * k + i}" for i in range(6)] for k, t in enumerate(PANEL_TYPES)}
    atlas.plot_panel_dotplot(adata, panel, path=tmp_path / "panel.png")
    adata.obs["leiden"] = pd.Categorical([str(i % 26) for i in range(adata.n_obs)])
    markers = pd.DataFrame(
        [(str(c), r, f"G{3 * c + r}") for c in range(26) for r in (1, 2, 3, 4)],
        columns=["cluster", "rank", "gene"],
    )
    atlas.plot_marker_dotplot(
        adata, markers, groupby="leiden", n_per_cluster=3, path=tmp_path / "markers.png"
    )
    for name in ("panel", "markers"):
        width, height = _png_size(tmp_path / f"{name}.png")
        assert width <= base.MAX_WIDTH_PX, name
        assert height <= 1600, name
    panel_fig, markers_fig = figures
    for fig, n_genes in ((panel_fig, 102), (markers_fig, 78)):
        rows = [ax for ax in fig.axes if any(c.get_cmap().name == "Reds" for c in _points(ax))]
        assert len(rows) >= 2  # wrapped
        assert sum(len(ax.get_xticklabels()) for ax in rows) == n_genes
    # each cell type's bracket has its fixed colour
    brackets = {
        _hex(line.get_color())
        for ax in panel_fig.axes
        for line in ax.get_lines()
        if line.get_linewidth() == 2.0
    }
    assert brackets == {to_hex(vocabulary.cell_type_colour(t)) for t in PANEL_TYPES}


def test_wrap_blocks_keeps_every_gene_in_order_within_the_width():
    blocks = [("a", list("abcdefghij")), ("b", list("xyz")), ("c", [str(i) for i in range(30)])]
    rows = atlas.wrap_blocks(blocks, 12)
    flat = [g for row in rows for _, genes in row for g in genes]
    assert flat == [g for _, genes in blocks for g in genes]
    assert all(sum(len(g) for _, g in row) <= 12 for row in rows)
    assert len(rows) == 4  # 43 genes need 4 rows of 12
    # a block that fits in a row is never split
    assert [label for label, _ in rows[0]] == ["a"]


def test_dotplot_statistics_scale_each_gene_and_count_expressing_cells():
    obs = pd.DataFrame({"g": ["x", "x", "y", "y"]}, index=list("abcd"))
    adata = ad.AnnData(
        np.array([[1, 0], [3, 0], [0, 5], [0, 1]], dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=["A", "B"]),
    )
    scaled, fraction = atlas.dotplot_statistics(adata, ["A", "B"], groupby="g")
    assert scaled.loc["x", "A"] == 1.0 and scaled.loc["y", "A"] == 0.0
    assert scaled.loc["y", "B"] == 1.0
    assert fraction.loc["x", "A"] == 1.0 and fraction.loc["y", "B"] == 1.0
    assert fraction.loc["x", "B"] == 0.0


def test_every_figure_stays_modest_at_the_chosen_dpi(figures, tmp_path):
    """Within 1280 px and a few hundred kB each: the report embeds every figure."""
    summary = _many_types_summary()
    results = _signature_results(summary, {PANEL_TYPES[0]})
    proportions, tests = _composition_inputs()
    paths = {
        "umap": tmp_path / "umap.png",
        "heatmap": tmp_path / "heatmap.png",
        "donors": tmp_path / "donors.png",
        "composition": tmp_path / "composition.png",
    }
    plot_umap(_umap_atlas(), keys=["cell_type", "condition", "donor", "sample"], path=paths["umap"])
    signatures.plot_signature_heatmap(results, path=paths["heatmap"], contrast=CONTRAST)
    plot_signature_by_donor(
        summary, signature="cytotoxicity", path=paths["donors"], results=results
    )
    plot_composition(proportions, tests, path=paths["composition"], contrast=CONTRAST)
    assert base.DPI <= 120
    for name, path in paths.items():
        width, _ = _png_size(path)
        assert width <= base.MAX_WIDTH_PX, name
        assert path.stat().st_size < 400_000, name


def test_figures_of_a_confounded_study_say_so_in_their_titles(figures, tmp_path):
    """Condition aliased with technology: every multi-cell-type figure carries the tag."""
    summary = _many_types_summary(3)
    results = _signature_results(summary, set())
    tag = "confounded: condition aliased with a technical factor"
    signatures.plot_signature_heatmap(results, path=tmp_path / "clean.png", contrast=CONTRAST)
    assert not any(tag in t for t in _all_texts(figures[-1]))
    confounded = results.assign(evidence=vocabulary.CONFOUNDED)
    signatures.plot_signature_heatmap(confounded, path=tmp_path / "h.png", contrast=CONTRAST)
    assert any(tag in t for t in _all_texts(figures[-1]))
    signature = str(summary["signature"].iloc[0])
    signatures.plot_signature_by_donor(summary, signature=signature, path=tmp_path / "d.png",
                                       results=confounded, contrast=CONTRAST)  # fmt: skip
    assert any(tag in t for t in _all_texts(figures[-1]))
    proportions, tests = _composition_inputs()
    plot_composition(proportions, tests.assign(evidence=vocabulary.CONFOUNDED),
                     path=tmp_path / "c.png", contrast=CONTRAST)  # fmt: skip
    assert any(tag in t for t in _all_texts(figures[-1]))
    assert vocabulary.confounded_title("t", ["donor_level", "not_testable"]) == "t"
    assert vocabulary.evidence_title("t", ["exploratory_no_replication"]).endswith(
        "[exploratory: cell-level ranking, not findings]"
    )
