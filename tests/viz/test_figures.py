"""The paper's figures, built from real (tiny-model) traces and from synthetic arrays with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from evolens import viz
from evolens.errors import SettingsError
from evolens.trace import Trace
from evolens.viz.save import figure_bytes


def _axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


# ----------------------------------------------------------------------------- Fig. 2
def test_token_probability_figure_draws_each_candidate_from_the_trace(tiny_run) -> None:
    _, traces = tiny_run
    trace = traces[0]
    cand = trace.candidates(1, from_layer=0)
    fig = viz.token_probability_trace_figure(trace, 1, from_layer=0)
    (ax,) = _axes(fig)
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlim() == (0.0, float(trace.n_layers))
    assert len(ax.lines) == len(cand.tokens)
    for line, column in zip(
        ax.lines, cand.probs.T, strict=True
    ):  # each curve is that candidate's probabilities
        np.testing.assert_allclose(line.get_ydata(), column.numpy(), rtol=1e-6)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == viz.token_label(trace.tokens[1]) + " (generated)"
    assert ax.lines[0].get_linewidth() > ax.lines[-1].get_linewidth() or len(ax.lines) == 1


def test_token_probability_figure_caps_candidates_and_checks_shapes() -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(12), size=5)
    fig = viz.token_probability_figure(probs, [f"t{i}" for i in range(12)], max_candidates=4)
    assert len(_axes(fig)[0].lines) == 4
    with pytest.raises(SettingsError, match="candidate columns"):
        viz.token_probability_figure(probs, ["a"])
    with pytest.raises(SettingsError, match="dimension"):
        viz.token_probability_figure(probs[0], ["a"] * 12)


def test_token_probability_grid_defaults_to_the_first_18_steps(tiny_run) -> None:
    _, traces = tiny_run
    fig = viz.token_probability_grid(traces[0])
    assert len(_axes(fig)) == min(18, traces[0].n_steps)
    fig = viz.token_probability_grid(traces[0], [0, 2], ncols=1)
    assert [ax.get_title() for ax in _axes(fig)] == [
        f"{s}: {viz.token_label(traces[0].tokens[s])}" for s in (0, 2)
    ]
    with pytest.raises(SettingsError, match="out of range"):
        viz.token_probability_grid(traces[0], [99])


# ----------------------------------------------------------------------------- Fig. 3
def test_hallucination_figure_plots_both_curves_and_marks_layers() -> None:
    bad = np.array([0.0, 0.05, 0.1, 0.2, 0.9])
    good = np.array([0.0, 0.2, 0.5, 0.4, 0.05])
    contrast = viz.TokenContrast(
        bad, good, "water", "camera", crossing_layer=3, mutation_layer=3, critical_layer=2
    )
    (ax,) = _axes(viz.hallucination_figure(contrast))
    curves = {
        line.get_label(): line for line in ax.lines if line.get_label().startswith(("correct", "halluc"))
    }
    np.testing.assert_allclose(curves["hallucinated: water"].get_ydata(), bad)
    np.testing.assert_allclose(curves["correct: camera"].get_ydata(), good)
    assert to_hex(curves["hallucinated: water"].get_color()) == viz.tokens.HALLUCINATED_COLOR
    marks = {line.get_label(): line.get_xdata()[0] for line in ax.lines if "layer" in line.get_label()}
    assert marks == {"critical layer 2": 2, "mutation layer 3": 3, "crossing layer 3": 3}
    with pytest.raises(SettingsError, match="crossing_layer"):
        viz.hallucination_figure(viz.TokenContrast(bad, good, "a", "b", crossing_layer=9))
    with pytest.raises(SettingsError, match="same length"):
        viz.hallucination_figure(viz.TokenContrast(bad, good[:3], "a", "b"))
    assert len(_axes(viz.hallucination_grid([contrast] * 3, ncols=2))) == 3


# ----------------------------------------------------------------------------- Fig. 4
def test_maxabs_columns_matches_scikit_learn() -> None:
    from sklearn.preprocessing import MaxAbsScaler

    values = np.random.default_rng(1).normal(size=(40, 8))
    values[:, 3] = 0.0
    np.testing.assert_allclose(viz.maxabs_columns(values), MaxAbsScaler().fit_transform(values))


def test_jsd_heatmap_raw_and_paper_views(tiny_run) -> None:
    _, traces = tiny_run
    trace = traces[0]
    (ax,) = _axes(viz.jsd_trace_figure(trace))
    np.testing.assert_allclose(ax.images[0].get_array(), trace.jsd("bits").T.numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(1, trace.n_layers + 1)]
    (ax,) = _axes(viz.jsd_trace_figure(trace, reduction="paper"))
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, viz.maxabs_columns(trace.jsd("paper").T.numpy()), rtol=1e-6)
    np.testing.assert_allclose(np.abs(shown).max(axis=0), 1.0)


def test_jsd_heatmap_shows_the_first_40_tokens_and_annotates() -> None:
    jsd = np.random.default_rng(2).uniform(size=(6, 50))
    tokens = [f"w{i}" for i in range(50)]
    (ax,) = _axes(viz.jsd_heatmap_figure(jsd, tokens, normalize="maxabs"))
    grid = ax.images[0].get_array()
    assert grid.shape == (40, 6)
    np.testing.assert_allclose(grid, jsd[:, :40].T / jsd[:, :40].max(axis=1))  # MaxAbs over the tokens shown
    assert len(ax.texts) == 40 * 6
    (ax,) = _axes(viz.jsd_heatmap_figure(jsd, tokens, max_tokens=None, annotate=False))
    assert ax.images[0].get_array().shape == (50, 6) and not ax.texts
    with pytest.raises(SettingsError, match="tokens"):
        viz.jsd_heatmap_figure(jsd, tokens[:3])


def test_jsd_profile_mean_per_layer() -> None:
    values = np.arange(12, dtype=float).reshape(3, 4)
    (ax,) = _axes(viz.jsd_profile_figure({"hallucinated": values, "grounded": values * 0}))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), values.mean(axis=1))
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["hallucinated (n=4)", "grounded (n=4)"]


# ----------------------------------------------------------------------------- Fig. 5
def _drawn(fig: Figure) -> dict[str, str]:
    return {t.get_text(): to_hex(t.get_color()) for t in fig.axes[0].texts}


def test_skip_table_marks_hallucinated_red_and_corrected_green() -> None:
    rows = [[[" a", " dog", " runs"], [" a", " cat", " runs"]]]
    flags = [[[None, "hallucinated", None], [None, "corrected", None]]]
    fig = viz.skip_table_figure(["original", "skip.2"], rows, flags=flags, images=[np.zeros((8, 8, 3))])
    drawn = _drawn(fig)
    assert drawn["dog"] == viz.skip.FLAG_COLORS["hallucinated"]
    assert drawn["cat"] == viz.skip.FLAG_COLORS["corrected"]
    assert drawn["runs"] == viz.skip.TEXT_COLOR
    assert {"original", "skip.2"} <= set(drawn)
    assert len(fig.axes[0].images) == 1


def test_skip_table_wraps_long_text_into_a_taller_figure() -> None:
    short = viz.skip_table_figure(["original"], [[[" word"] * 3]])
    long = viz.skip_table_figure(["original"], [[[" word"] * 300]])
    assert long.get_size_inches()[1] > short.get_size_inches()[1] * 3
    xs = [t.get_position()[0] for t in long.axes[0].texts if t.get_text() == "word"]
    assert max(xs) < long.get_size_inches()[0]  # wrapped inside the figure


def test_skip_table_checks_its_inputs() -> None:
    with pytest.raises(SettingsError, match="columns"):
        viz.skip_table_figure(["a", "b"], [[[" x"]]])
    with pytest.raises(SettingsError, match="unknown flag"):
        viz.skip_table_figure(["a"], [[[" x"]]], flags=[[["wrong"]]])
    with pytest.raises(SettingsError, match="list of token strings"):
        viz.skip_table_figure(["a"], [["one string"]])


# ----------------------------------------------------------------------------- Fig. 6 / 7
def test_embedding_figure_colours_the_paper_layer_bands() -> None:
    layers = np.tile(np.arange(33), 3)
    coords = np.random.default_rng(3).normal(size=(layers.size, 2))
    groups = np.repeat([0, 1, 2], 33)
    (ax,) = _axes(
        viz.embedding_figure(coords, layers, groups, label_groups={0: "img A", 1: "img B", 2: "img C"})
    )
    bands = viz.paper_layer_bands(32)
    assert [(b.first, b.last) for b in bands] == [(0, 0), (1, 2), (3, 18), (19, 31), (32, 32)]
    sizes = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
    assert sizes == {b.label: 3 * (b.last - b.first + 1) for b in bands}
    assert len(ax.lines) == 3  # one trajectory per group
    assert [t.get_text() for t in ax.texts] == ["img A", "img B", "img C"]


def test_embedding_figure_accepts_stage_groups_with_name_and_layers() -> None:
    from dataclasses import dataclass

    @dataclass
    class Group:  # the shape of evolens.geometry.StageGroup
        name: str
        layers: tuple[int, ...]

    groups = [Group("rapid evolution", (1, 2, 3)), Group("stabilisation", (4, 6)), Group("mutation", (5,))]
    fig = viz.embedding_figure(np.zeros((6, 2)), [1, 2, 3, 4, 5, 6], bands=groups)
    sizes = {c.get_label(): len(c.get_offsets()) for c in _axes(fig)[0].collections}
    assert sizes == {"rapid evolution": 3, "stabilisation": 2, "mutation": 1}
    with pytest.raises(SettingsError, match="band"):
        viz.embedding_figure(np.zeros((2, 2)), [1, 2], bands=[object()])


def test_embedding_figure_continuous_colours_and_errors() -> None:
    coords = np.zeros((10, 2))
    fig = viz.embedding_figure(coords, np.arange(10), color_by="layer", connect=False)
    assert len(fig.axes) == 2  # the scatter and its colour bar
    with pytest.raises(SettingsError, match="layer labels"):
        viz.embedding_figure(coords, np.arange(9))
    with pytest.raises(SettingsError, match=r"\[n_points, 2\]"):
        viz.embedding_figure(np.zeros((10, 3)), np.arange(10))
    assert len(_axes(viz.embedding_grid([{"coords": coords, "layers": np.arange(10)}] * 2))) == 2


# ----------------------------------------------------------------------------- summaries
def test_layer_histogram_counts_each_layer_and_skips_missing() -> None:
    (ax,) = _axes(viz.layer_histogram_figure([1, 1, 3, np.nan, -1], n_layers=4))
    assert [p.get_height() for p in ax.patches] == [0, 2, 0, 1, 0]
    assert ax.get_legend().get_texts()[0].get_text() == "n=3, none: 2"
    with pytest.raises(SettingsError, match="beyond"):
        viz.layer_histogram_figure([7], n_layers=4)


def test_histogram_legends_cover_no_bar() -> None:
    """Bars of nearly equal height over every layer leave no room inside the axes: the legend goes above them."""
    rng = np.random.default_rng(0)
    layers = rng.integers(0, 33, 400).astype(float)
    fig = viz.dataset_summary_figure(
        n_layers=32, critical_layers=layers, mutation_layers=layers[::-1], hallucinated=rng.random(400) < 0.3
    )
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in _axes(fig)[:2]:
        legend = ax.get_legend().get_window_extent(renderer)
        bars = [patch.get_window_extent(renderer) for patch in ax.patches if patch.get_height() > 0]
        assert bars and not any(legend.overlaps(bar) for bar in bars)
        assert not legend.overlaps(ax.title.get_window_extent(renderer))


def test_dataset_summary_splits_hallucinated_and_grounded() -> None:
    fig = viz.dataset_summary_figure(
        n_layers=4,
        critical_layers=[2, 2, 3, 1],
        mutation_layers=[4, np.nan, 4, 3],
        hallucinated=[True, False, True, False],
    )
    axes = _axes(fig)
    assert [ax.get_title() for ax in axes] == [
        "critical layers",
        "mutation layers",
        "hallucinated vs grounded",
    ]
    assert [p.get_height() for p in axes[2].patches] == [2, 2]
    with pytest.raises(SettingsError, match="entries"):
        viz.dataset_summary_figure(n_layers=4, critical_layers=[1, 2], hallucinated=[True])
    with pytest.raises(SettingsError, match="give"):
        viz.dataset_summary_figure(n_layers=4)


# ----------------------------------------------------------------------------- text safety and saving
def test_model_strings_are_drawn_literally_never_as_mathtext() -> None:
    tokens = ["$\\frac{", "<script>", "a\nb", " "]
    jsd = np.ones((2, 4))
    fig = viz.jsd_heatmap_figure(jsd, tokens)
    svg = figure_bytes(fig, "svg").decode()  # would raise on "$\frac{" if parsed as mathtext
    assert "$\\frac{" in svg and "&lt;script&gt;" in svg and "<script>" not in svg
    fig = viz.token_probability_figure(np.ones((3, 2)) / 2, ["$x$", "$\\frac{"])
    figure_bytes(fig, "png")
    fig = viz.skip_table_figure(["$a$"], [[["$\\frac{", " b$"]]])
    assert "$\\frac{" in figure_bytes(fig, "svg").decode()


def test_token_label_makes_whitespace_visible() -> None:
    assert viz.token_label(" boy") == "boy"
    assert viz.token_label("\n") == "\\n"
    assert viz.token_label(" ") == "' '"
    assert viz.token_label("a\x01") == "a\\x01"


def test_save_figure_writes_each_format_atomically(tmp_path: Path) -> None:
    fig = viz.layer_histogram_figure([1, 2], n_layers=3)
    written = viz.save_figure(fig, tmp_path / "sub" / "hist", ["png", "svg", "pdf"])
    assert [p.name for p in written] == ["hist.png", "hist.svg", "hist.pdf"]
    assert written[0].read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in written[1].read_bytes()[:500]
    assert written[2].read_bytes().startswith(b"%PDF")
    assert viz.save_figure(fig, tmp_path / "one.svg") == [tmp_path / "one.svg"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "hist.pdf",
        "hist.png",
        "hist.svg",
        "one.svg",
    ]  # no temporary files left
    with pytest.raises(SettingsError, match="suffix"):
        viz.save_figure(fig, tmp_path / "x.jpg")
    with pytest.raises(SettingsError, match="format"):
        viz.save_figure(fig, tmp_path / "x", ["gif"])


def test_a_failed_save_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    fig = viz.layer_histogram_figure([1], n_layers=2)
    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError):
        viz.save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_figures_from_a_loaded_trace_match_the_live_trace(tiny_run) -> None:
    root, traces = tiny_run
    loaded = Trace.load(root / "traces" / traces[0].item_id)
    live = _axes(viz.jsd_trace_figure(traces[0]))[0].images[0].get_array()
    stored = _axes(viz.jsd_trace_figure(loaded))[0].images[0].get_array()
    np.testing.assert_allclose(stored, live, rtol=1e-5)
    a = _axes(viz.token_probability_trace_figure(loaded, 2))[0].lines[0].get_ydata()
    b = _axes(viz.token_probability_trace_figure(traces[0], 2))[0].lines[0].get_ydata()
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert torch.equal(loaded.generated_ids, traces[0].generated_ids)
