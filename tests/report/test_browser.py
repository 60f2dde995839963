"""A generated report in a real browser: Debian's headless Chromium driven by Playwright.

In CI (``EVOLENS_REQUIRE_BROWSER=1``, set by .ci/run; ``make test`` installs Chromium) a missing browser FAILS the
test; elsewhere it is skipped with the reason shown. Playwright never downloads a browser of its own here.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolens.report import ReportOptions, write_report
from evolens.report.payload import TOP1_SERIES
from evolens.trace import Trace

from .helpers import EVIL, hostile

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_or_skip() -> Path:
    required = os.environ.get("EVOLENS_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.is_file():
        problem = f"{CHROMIUM} not found (apt-get install chromium, or `make browser` as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright python package is not installed (pip install -e '.[dev]')"
    if problem is None:
        return CHROMIUM
    if required:
        pytest.fail(f"EVOLENS_REQUIRE_BROWSER=1 but {problem}")
    pytest.skip(f"browser test skipped: {problem}; set EVOLENS_REQUIRE_BROWSER=1 to make this a failure")


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    executable = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh user-data-dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(executable),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(params=[False, True], ids=["json", "gzip"])
def report_file(tiny_run, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, list]:
    _, traces = tiny_run
    evil = hostile(traces[0], item_id="evil")
    n = evil.n_steps
    extras = {
        "evil": {
            "token_values": {"stage": ["rapid", "stable"] + ["mutation"] * (n - 2)},
            "token_flags": {"hallucinated": [False, True] + [False] * (n - 2)},
            "skip": [{"name": "skip.2", "tokens": [" a", EVIL], "flags": [None, "corrected"]}],
        }
    }
    path = write_report(
        tmp_path / "report.html",
        [evil, traces[1]],
        ReportOptions(title=EVIL, compress=request.param),
        extras=extras,
    )
    return path, [evil, traces[1]]


@pytest.mark.browser
def test_report_in_headless_chromium(browser_context, report_file, tmp_path: Path) -> None:
    path, traces = report_file
    page = browser_context.new_page()
    problems: list[str] = []
    dialogs: list[str] = []
    requests: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))

    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    # the hostile token is shown as text, in the generated text and in the page title
    token = page.locator("#item-0 .tok[data-step='1']")
    assert token.inner_text() == EVIL
    assert page.title() == EVIL
    assert page.locator("script").count() == 2  # the data block and the report's own script, nothing injected

    # clicking it shows its candidates' curves, its JSD column and the logit-lens grid
    token.click()
    detail = page.locator("#item-0 .detail")
    detail.wait_for(state="visible")
    n_candidates = len(traces[0].candidates(1).tokens)
    assert page.locator("#item-0 .detail svg.curves path.cand").count() == n_candidates
    assert detail.locator(".selected-token").inner_text() == EVIL
    assert EVIL in detail.locator("table.grid").inner_text()
    assert detail.locator("svg.jsd-col rect").count() == traces[0].n_layers
    assert detail.locator("table.grid tbody tr").count() == traces[0].n_layers + 1
    assert "sel" in (token.get_attribute("class") or "")

    # tokens are coloured by the chosen series; the heatmap draws one row per token and selects on click
    assert page.locator("#series option").count() == 2
    assert page.locator("#series").input_value() == "stage"  # the series given with the extras comes first
    before = token.evaluate("el => el.style.background")
    page.select_option("#series", TOP1_SERIES)
    assert token.evaluate("el => el.style.background") not in ("", before)
    page.locator("#item-1 .heatmap").scroll_into_view_if_needed()  # heatmaps are drawn when scrolled to
    heatmap_rows = page.locator("#item-1 table.hm tbody tr")
    heatmap_rows.first.wait_for()
    assert heatmap_rows.count() == traces[1].n_steps
    heatmap_rows.nth(2).click()
    assert page.locator("#item-1 .detail svg.curves path.cand").count() == len(traces[1].candidates(2).tokens)
    page.select_option("#item-0 select.hm-view", "paper")
    assert page.locator("#item-0 table.hm tbody tr").count() == traces[0].n_steps

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    assert dialogs == [], "a dialog fired: a string was run as code"
    assert problems == []
    assert requests == [path.as_uri()], "the report reached for something besides itself"
    page.close()


def test_a_missing_browser_fails_in_ci_and_skips_visibly_elsewhere(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("EVOLENS_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="no-chromium not found"):
        _browser_or_skip()
    monkeypatch.delenv("EVOLENS_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="EVOLENS_REQUIRE_BROWSER=1"):
        _browser_or_skip()


@pytest.mark.browser
def test_run_report_colouring_toggle_and_token_analysis(
    browser_context, analysed_run: Path, tmp_path: Path
) -> None:
    path = write_report(tmp_path / "run.html", analysed_run)
    n_layers = Trace.load(analysed_run / "items" / "1").n_layers
    page = browser_context.new_page()
    problems: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    controls = page.locator(".controls").inner_text()
    assert "labelled hallucinated by the benchmark evaluation" in controls
    assert "the analysis detected a mutation layer" in controls

    # coloured by critical layer by default; the toggle switches to the stages across layers and back
    token = page.locator("#item-0 .tok[data-step='0']")
    buttons = page.locator("button.colour-toggle")
    assert buttons.count() == 2
    assert (
        page.locator("button.colour-toggle[data-series='critical layer']").get_attribute("aria-pressed")
        == "true"
    )
    assert token.evaluate("el => el.style.background").startswith("rgb(")
    page.locator("button.colour-toggle[data-series='stages']").click()
    assert "linear-gradient" in token.evaluate("el => el.style.background")
    assert page.locator("#series").input_value() == "stages"
    assert "rapid evolution" in page.locator("#scale").inner_text()
    assert "mutation layers: 4" in (token.get_attribute("title") or "")
    page.locator("button.colour-toggle[data-series='critical layer']").click()
    assert token.evaluate("el => el.style.background").startswith("rgb(")

    # a click shows the token's critical layers, its mutation and its stage bar
    token.click()
    panel = page.locator("#item-0 .detail .panel.analysis")
    panel.wait_for(state="visible")
    facts = panel.locator("table.facts").inner_text()
    assert "critical layer (stages, jsd-based)\tlayer 2" in facts
    assert "critical layer, probability-based\tlayer 1" in facts and "agree" in facts
    assert "mutation layers\t4" in facts and "mutation 4" in facts
    assert "layer 4: JSD spike + top-1 flip" in panel.locator("ul.mutations").inner_text()
    assert panel.locator("svg.stage-bar rect").count() == n_layers + 1
    assert page.locator("#item-0 .detail svg.curves line.crit-mark").count() == 1
    assert page.locator("#item-0 .detail svg.curves line.mut-mark").count() == 1
    assert page.locator("#item-0 .detail .eval-label").inner_text().startswith("evaluation: ")
    page.locator("#item-0 .tok[data-step='1']").click()
    assert "critical layer (stages, jsd-based)\tnot found" in panel.locator("table.facts").inner_text()
    assert "none detected" in panel.locator("table.facts").inner_text()

    # heatmaps are drawn when scrolled near, into space reserved for them: nothing below one jumps when it appears
    # (a jump under the pointer would make a click land on something else)
    # (from a fresh load: the clicks above scrolled to the first item, which may already have drawn its heatmap)
    page.evaluate("() => window.scrollTo(0, 0)")  # a reload keeps the scroll position
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    second = page.locator("#item-1 .tok[data-step='0']")
    assert page.locator("#item-0 .heatmap[data-drawn]").count() == 0
    second.scroll_into_view_if_needed()
    before = second.bounding_box()
    page.wait_for_selector("#item-0 .heatmap[data-drawn='1']")
    after = second.bounding_box()
    assert before is not None and after is not None and abs(after["y"] - before["y"]) <= 1.0, (before, after)

    second.click()  # the second item keeps its own (real) analysis
    page.locator("#item-1 .detail .panel.analysis").wait_for(state="visible")

    # the item list filters the items: the rows and the item sections that do not match are hidden
    verdict = page.locator('select[data-filter="verdict"] option').nth(1).get_attribute("value")
    rows = page.locator("tr[data-row]")
    matching = [i for i in range(rows.count()) if rows.nth(i).get_attribute("data-verdict") == verdict]
    page.select_option('select[data-filter="verdict"]', verdict)
    assert page.locator("tr[data-row]:not([hidden])").count() == len(matching) < rows.count()
    assert page.locator("section.item:not([hidden])").count() == len(matching)
    assert page.locator("#filter-count").inner_text() == f"{len(matching)} of {rows.count()} items"
    page.select_option('select[data-filter="verdict"]', "")
    assert page.locator("section.item:not([hidden])").count() == rows.count()

    # a link from the run summary to an item scrolls its header below the sticky controls, not under them
    page.evaluate("() => window.scrollTo(0, 0)")
    page.locator('a[href="#item-1"]').first.click()
    page.wait_for_function("() => window.scrollY > 0")
    header = page.locator("#item-1").bounding_box()
    bar = page.locator(".controls").bounding_box()
    assert header is not None and bar is not None and header["y"] >= bar["y"] + bar["height"] - 1, (
        header,
        bar,
    )

    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
    assert dialogs == [] and problems == []
    assert requests == [path.as_uri()] * 2, (
        "the report reached for something besides itself (it loaded twice)"
    )
    page.close()
