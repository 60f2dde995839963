"""The image-token lens's report section: read from ``patches.json`` beside a trace, a grid per layer behind a
slider, the words' heat maps, every model string escaped, a broken file noted instead of failing the report."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

from evolens.metrics.patches import PATCHES_FILE, PatchGrid
from evolens.report import ReportOptions, build_report
from evolens.testing.patches import synthetic_patch_lens

from .helpers import script_blocks
from .test_browser import browser_context  # noqa: F401  (the fixture)


def _trace_dir(tiny_run, tmp_path: Path) -> tuple[Path, str]:
    root, traces = tiny_run
    target = tmp_path / "item"
    shutil.copytree(root / "traces" / traces[0].item_id, target)
    return target, traces[0].item_id


def test_section_from_patches_json(tiny_run, tmp_path: Path) -> None:
    directory, item_id = _trace_dir(tiny_run, tmp_path)
    result = synthetic_patch_lens(n_layers=tiny_run[1][0].n_layers, item_id=item_id)
    result.vocab[1] = "<script>x"  # a hostile token string
    result.save(directory / PATCHES_FILE)
    html = build_report([directory], ReportOptions(summary_figures=False))
    section = re.search(r'<section class="patches".*?</section>', html, re.S)
    assert section is not None
    part = section.group(0)
    assert 'class="patch-layer" min="0" max="4"' in part and 'value="2"' in part
    tables = re.findall(r'<table class="patch-grid" data-layer="(\d)"( hidden)?>', part)
    assert [t[0] for t in tables] == ["0", "1", "2", "3", "4"]
    assert [bool(t[1]) for t in tables] == [True, True, False, True, True]  # the middle layer shows first
    assert part.count("<tr>") == 5 * 3 and "&lt;script&gt;x" in part and "<script>x" not in part
    assert "P(dog) over the image tokens and layers" in part and "<img" in part
    assert "3 × 3 patches" in part
    # the slider's script is the page's own (covered by its CSP hash)
    assert any("section.patches" in s for s in script_blocks(html))


def test_section_without_a_grid_and_a_broken_file(tiny_run, tmp_path: Path) -> None:
    directory, item_id = _trace_dir(tiny_run, tmp_path)
    result = replace(synthetic_patch_lens(item_id=item_id), grid=PatchGrid(0, 0, "tiles"))
    result.save(directory / PATCHES_FILE)
    html = build_report([directory], ReportOptions(summary_figures=False))
    assert "no patch grid (tiles): image tokens in order, 3 per row" in html
    (directory / PATCHES_FILE).write_text("{}")
    html = build_report([directory], ReportOptions(summary_figures=False))
    assert '<section class="patches"' not in html and "patches.json could not be read" in html


def test_slider_in_headless_chromium(browser_context, tiny_run, tmp_path: Path) -> None:  # noqa: F811
    directory, item_id = _trace_dir(tiny_run, tmp_path)
    synthetic_patch_lens(item_id=item_id).save(directory / PATCHES_FILE)
    path = tmp_path / "report.html"
    path.write_text(build_report([directory], ReportOptions(summary_figures=False)), encoding="utf-8")
    page = browser_context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    visible = page.locator("section.patches table.patch-grid:visible")
    assert visible.count() == 1 and visible.get_attribute("data-layer") == "2"
    page.locator("section.patches input.patch-layer").fill("4")
    assert visible.count() == 1 and visible.get_attribute("data-layer") == "4"
    assert page.locator("section.patches output.patch-layer-value").text_content() == "4"
    assert visible.locator("td").first.text_content() == "dog"
    assert not problems, problems
    page.close()
