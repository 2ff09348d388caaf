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

    def capture(fig, path):
        saved.append(fig)
        real_save(fig, path)
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
    assert len(panels) == 2  # signature and control
    for ax in panels:
        assert _colours_by_x(ax) == {0: {CONDITION}, 1: {REFERENCE}}
        lines = [c for c in ax.collections if isinstance(c, LineCollection)]
        means = {_hex(c) for coll in lines for c in coll.get_colors()}
        assert means == {CONDITION, REFERENCE}


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
