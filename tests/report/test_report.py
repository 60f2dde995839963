"""The HTML report: one self-contained file, faithful data, every untrusted string escaped."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from evolens.errors import SettingsError, StoreError
from evolens.report import (
    ReportOptions,
    build_report,
    collect_trace_dirs,
    first_stable_top1_layer,
    json_for_script,
    write_report,
)
from evolens.report.options import check_report_path
from evolens.report.payload import PROB_SCALE, TOP1_SERIES
from evolens.viz import layer_histogram_figure

from .helpers import EVIL, NASTY, data_block, hostile, script_blocks

# ----------------------------------------------------------------------------- escaping (unit)


@given(st.text())
def test_json_for_script_is_inert_in_a_script_element_and_round_trips(value: str) -> None:
    encoded = json_for_script({"k": value, "list": [value]})
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in encoded
    assert json.loads(encoded) == {"k": value, "list": [value]}


def test_json_for_script_drops_non_finite_numbers() -> None:
    assert json.loads(json_for_script([float("nan"), float("inf"), 1.5])) == [None, None, 1.5]


def test_hostile_strings_are_escaped_in_markup_and_data(tiny_run) -> None:
    _, traces = tiny_run
    evil = hostile(traces[0])
    html = build_report(
        [evil],
        ReportOptions(title=EVIL),
        extras={
            evil.item_id: {
                "token_values": {EVIL: [1] * evil.n_steps},
                "token_flags": {NASTY[0]: [True] + [False] * (evil.n_steps - 1)},
                "skip": [{"name": EVIL, "tokens": [EVIL], "flags": ["hallucinated"], "note": NASTY[3]}],
                "tables": [{"title": EVIL, "columns": [EVIL], "rows": [[EVIL]]}],
                "notes": [EVIL],
            }
        },
        summary={"statistics": {EVIL: EVIL}, "notes": [NASTY[5]]},
    )
    assert EVIL not in html and "<img src=x" not in html and 'onmouseover="alert' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # exactly our two script elements: the data block and the page's script
    blocks = script_blocks(html)
    assert len(blocks) == 2
    assert "</script" not in blocks[0].lower() and "<!--" not in blocks[0] and "\u2028" not in blocks[0]
    data = data_block(html)
    item = data["items"][0]
    assert item["tokens"] == evil.tokens and item["id"] == evil.item_id
    assert EVIL in item["vocab"].values()
    assert data["flags"] == [NASTY[0]]
    assert EVIL in [s["key"] for s in data["series"]]


def test_the_page_is_self_contained(tiny_run) -> None:
    _, traces = tiny_run
    fig = layer_histogram_figure([1, 2], n_layers=4)
    html = build_report(traces, extras={traces[0].item_id: {"figures": [{"title": "hist", "figure": fig}]}})
    for attr in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html, flags=re.I):
        assert attr.startswith(("data:", "#")), attr
    assert not re.search(r"(?:src|href)\s*=\s*['\"]?\s*(?:https?:)?//", html, flags=re.I)
    assert "url(" not in html and "@import" not in html
    # the Content-Security-Policy allows the page's own script only, by hash, and no network at all
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    script = script_blocks(html)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp.replace("&#x27;", "'")
    assert "default-src 'none'" in csp.replace("&#x27;", "'")


# ----------------------------------------------------------------------------- data


def test_stage_names_and_colours_come_from_their_owners(tiny_run) -> None:
    from evolens.analysis.stages import STABLE, STAGE_NAMES
    from evolens.geometry import paper_stage_groups, stage_groups
    from evolens.viz.style import STAGE_COLOURS

    data = data_block(build_report(tiny_run[1][:1], ReportOptions(summary_figures=False)))
    assert data["stage_names"] == {str(code): name for code, name in STAGE_NAMES.items()}
    assert data["palettes"]["stages"] == {str(code): colour for code, colour in STAGE_COLOURS.items()}
    assert (
        STAGE_NAMES[STABLE] == "stabilisation"
    )  # the README's spelling, also in the geometry's stage groups
    assert [g.name for g in stage_groups(8, 3, 6)] == [STAGE_NAMES[c] for c in (0, 1, 2)]
    assert {g.name for g in paper_stage_groups(8)} >= {STAGE_NAMES[0], STAGE_NAMES[1]}


def test_embedded_data_reproduces_the_trace_metrics(tiny_run) -> None:
    _, traces = tiny_run
    data = data_block(build_report(traces, ReportOptions(topk=3, from_layer=1)))
    assert data["prob_scale"] == PROB_SCALE
    for trace, item in zip(traces, data["items"], strict=True):
        assert item["n_layers"] == trace.n_layers and item["ids"] == trace.generated_ids.tolist()
        probs = torch.tensor(item["p"], dtype=torch.float32).T / PROB_SCALE
        assert torch.allclose(probs, trace.token_probs(), atol=0.6 / PROB_SCALE)
        assert torch.equal(torch.tensor(item["rank"]).T, trace.token_ranks())
        jsd = torch.tensor(item["jsd"], dtype=torch.float32).T / data["jsd_scale"]
        assert torch.allclose(jsd, trace.jsd("bits"), atol=0.6 / data["jsd_scale"])
        paper = torch.tensor(item["jsd_paper"]).T
        assert torch.allclose(paper, trace.jsd("paper"), rtol=1e-3)
        top = trace.topk(3)
        assert torch.equal(torch.tensor(item["topk_ids"]).transpose(0, 1), top.ids)
        for step in range(trace.n_steps):
            cand = trace.candidates(step, 1)
            assert item["cand_ids"][step] == cand.ids.tolist()
            got = torch.tensor(item["cand_p"][step], dtype=torch.float32).T / PROB_SCALE
            assert torch.allclose(got, cand.probs, atol=0.6 / PROB_SCALE)
        assert item["values"][TOP1_SERIES] == first_stable_top1_layer(trace.token_ranks())
        for token_id in item["ids"] + [i for row in item["cand_ids"] for i in row]:
            assert str(token_id) in item["vocab"]


def test_token_series_and_flags_are_embedded_and_marked(tiny_run) -> None:
    _, traces = tiny_run
    trace = traces[0]
    n = trace.n_steps
    extras = {
        trace.item_id: {
            "token_values": {"critical layer": [2] * n, "stage": ["rapid"] * (n - 1) + [None]},
            "token_flags": {"hallucinated": [False, True] + [False] * (n - 2)},
        }
    }
    html = build_report(traces, extras=extras)
    data = data_block(html)
    series = {s["key"]: s for s in data["series"]}
    assert data["default_series"] == "critical layer"  # the first given series wins over the built-in one
    assert series["critical layer"]["kind"] == "layer"
    assert series["stage"]["kind"] == "category" and series["stage"]["categories"] == ["rapid"]
    assert data["items"][0]["flags"] == {"hallucinated": [0, 1] + [0] * (n - 2)}
    assert data["items"][1]["flags"] == {} and TOP1_SERIES in data["items"][1]["values"]
    assert '<span class="tok flag-0" data-step="1"' in html
    assert "tokens flagged hallucinated" in html


def test_extras_are_checked(tiny_run) -> None:
    _, traces = tiny_run
    item = traces[0].item_id
    with pytest.raises(SettingsError, match="has 2 values but the item has"):
        build_report(traces, extras={item: {"token_values": {"x": [1, 2]}}})
    with pytest.raises(SettingsError, match="unknown key"):
        build_report(traces, extras={item: {"colour": {}}})
    with pytest.raises(SettingsError, match="flags must be"):
        build_report(traces, extras={item: {"skip": [{"name": "s", "tokens": ["a"], "flags": ["bad"]}]}})
    with pytest.raises(SettingsError, match="unknown key"):
        build_report(traces, summary={"stats": {}})
    with pytest.raises(SettingsError, match="appears more than once"):
        build_report([traces[0], traces[0]], extras={item: {"notes": ["x"]}})


def test_optional_sections_appear_only_with_data(tiny_run) -> None:
    _, traces = tiny_run
    plain = build_report(traces)
    assert "Layer skipping" not in plain and "Feature geometry" not in plain and 'class="tables"' not in plain
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    extras = {
        traces[0].item_id: {
            "skip": [
                {
                    "name": "skip.2",
                    "tokens": [" a", " cat"],
                    "flags": [None, "corrected"],
                    "note": "layers 27-28",
                }
            ],
            "geometry": [{"title": "t-SNE of the tokens", "figure": png.getvalue()}],
            "tables": [{"title": "CHAIR", "columns": ["metric", "value"], "rows": [["CHAIR_s", 0.123456]]}],
        }
    }
    html = build_report(
        traces, extras=extras, summary={"geometry": [{"title": "12 images", "figure": png.getvalue()}]}
    )
    assert html.count("Layer skipping") == 1 and '<span class="skip-corrected"> cat</span>' in html
    assert html.count("Feature geometry") == 2 and "t-SNE of the tokens" in html
    assert "<td>0.1235</td>" in html


def test_images_are_embedded_from_the_recorded_file(tiny_run, tmp_path: Path) -> None:
    root, traces = tiny_run
    html = build_report(traces, ReportOptions(summary_figures=False))
    assert html.count('<img alt="input image" src="data:image/png;base64,') == 2
    # the recorded paths no longer resolve: the report says so, and image_root finds the files by name
    copy = tmp_path / "imgs"
    shutil.copytree(root / "images", copy)
    moved = [replace(t, image=replace(t.image, source="gone/" + Path(t.image.source).name)) for t in traces]
    lost = build_report(moved, ReportOptions(summary_figures=False))
    assert lost.count("image file not found") == 2 and 'alt="input image"' not in lost
    rescued = build_report(moved, ReportOptions(image_root=copy, summary_figures=False))
    assert rescued.count('alt="input image"') == 2 and "image file not found" not in rescued
    # a file that changed since tracing is shown with a warning
    changed = tmp_path / "changed.png"
    Image.new("RGB", (5, 5), "red").save(changed)
    html = build_report([replace(traces[0], image=replace(traces[0].image, source=str(changed)))])
    assert "the file differs from the traced image" in html
    # an image given with the extras wins
    given = build_report(moved[:1], extras={moved[0].item_id: {"image": np.zeros((8, 8, 3), np.uint8)}})
    assert given.count('alt="input image"') == 1 and "image file not found" not in given
    with pytest.raises(SettingsError, match="image"):
        build_report(moved[:1], extras={moved[0].item_id: {"image": 42}})


def test_directories_are_searched_for_traces(tiny_run, tmp_path: Path) -> None:
    root, traces = tiny_run
    dirs = collect_trace_dirs([root])
    assert [d.name for d in dirs] == sorted(t.item_id for t in traces)
    from_dirs = data_block(build_report(root, ReportOptions(summary_figures=False)))
    from_objects = data_block(build_report(traces, ReportOptions(summary_figures=False)))
    assert [i["tokens"] for i in from_dirs["items"]] == [i["tokens"] for i in from_objects["items"]]
    assert from_dirs["items"][0]["jsd"] == from_objects["items"][0]["jsd"]
    with pytest.raises(StoreError, match="does not exist"):
        collect_trace_dirs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no evolens trace"):
        collect_trace_dirs([tmp_path / "empty"])
    assert len(data_block(build_report(root, ReportOptions(max_items=1)))["items"]) == 1


def test_summary_lists_statistics_and_links_every_item(tiny_run) -> None:
    _, traces = tiny_run
    done = []
    html = build_report(
        traces, summary={"statistics": {"CHAIR_i": 0.25}}, progress=lambda i, n: done.append((i, n))
    )
    assert done == [(1, 2), (2, 2)]
    assert '<a href="#item-0">' in html and '<a href="#item-1">' in html
    assert 'id="item-0"' in html and 'id="item-1"' in html
    assert f"<tr><th>generated tokens</th><td>{sum(t.n_steps for t in traces)}</td></tr>" in html
    assert "<tr><th>CHAIR_i</th><td>0.25</td></tr>" in html
    assert html.count('src="data:image/png;base64,') == 2  # the two item images
    assert html.count('src="data:image/svg+xml;base64,') == 2  # the two summary figures, drawn as SVG


def test_write_report_is_atomic_and_checks_the_suffix(tiny_run, tmp_path: Path) -> None:
    _, traces = tiny_run
    path = write_report(tmp_path / "out" / "report.html", traces)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
    with pytest.raises(SettingsError, match=r"\.html"):
        write_report(tmp_path / "report.txt", traces)
    with pytest.raises(SettingsError, match=r"\.html"):  # before anything is read
        write_report(tmp_path / "report.txt", tmp_path / "missing")
    assert check_report_path(str(tmp_path / "R.HTM")) == tmp_path / "R.HTM"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"topk": 0}, "topk must be a positive integer, got 0"),
        ({"topk": 2.5}, "topk must be a positive integer"),
        ({"topk": True}, "topk must be a positive integer"),
        ({"max_items": 0}, "max_items must be a positive integer, got 0"),
        ({"from_layer": -1}, r"from_layer must be a layer index >= 0 \(or None\), got -1"),
        ({"from_layer": 1.0}, "from_layer must be a layer index"),
    ],
)
def test_report_options_refuse_bad_values(given: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ReportOptions(**given)


def test_report_options_are_frozen_and_normalise_the_image_root(tmp_path: Path) -> None:
    options = ReportOptions(image_root=str(tmp_path), max_items=None, from_layer=0)
    assert options.image_root == tmp_path and isinstance(options.image_root, Path)
    with pytest.raises(FrozenInstanceError):
        options.topk = 3
    assert ReportOptions() == ReportOptions(topk=5, summary_figures=True)


def test_large_data_is_compressed_and_decodes_to_the_same(tiny_run) -> None:
    _, traces = tiny_run
    evil = hostile(traces[0])
    plain = build_report([evil, traces[1]], ReportOptions(compress=False))
    packed = build_report([evil, traces[1]], ReportOptions(compress=True))
    assert 'data-encoding="gzip+base64"' in packed and 'data-encoding="gzip+base64"' not in plain
    assert data_block(packed) == data_block(plain)
    block = script_blocks(packed)[0]
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", block)  # base64 cannot close the element or open a comment
    assert 'type="application/json"' in build_report(traces)  # small reports stay readable JSON by default
