"""The console in a real browser: Debian's chromium, driven by Playwright (`executable_path`, no
browser download), against the console served over real HTTP on a free port, with a real BigQuery
emulator holding a slice of MNIST, a real ML Metadata store and a registry of a trained model."""

from __future__ import annotations

import re
import shutil
import threading

import pytest
from playwright.sync_api import expect

from mlpipe.console.app import create_app
from mlpipe.console.sample_store import build_sample_state
from mlpipe.registry import registry_for
from tests.console.trained_model import train_digit_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make setup)"),
]
# A stroke per digit on the 280×280 pad, as (x, y) points.
DIGITS = {
    1: [(140, 40), (140, 240)],
    7: [(70, 50), (210, 50), (120, 240)],
    0: [(140, 40), (200, 80), (215, 140), (200, 200), (140, 240), (80, 200), (65, 140), (80, 80), (140, 40)],
}


@pytest.fixture(scope="module")
def state(bq_settings, tmp_path_factory):
    from mlpipe.bigquery.load import load_mnist_tables

    settings = bq_settings.replace(dataset="console_e2e", state_dir=tmp_path_factory.mktemp("console-e2e"),
                                   log_predictions=False)
    load_mnist_tables(settings, limit=100)
    model = train_digit_model(tmp_path_factory.getbasetemp() / "digit_model")
    return build_sample_state(settings, runs=3, versions=2, saved_model=model)


@pytest.fixture(scope="module")
def console_url(state):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(state.settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)  # the first prediction loads TensorFlow and the model
    page.problems = []
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    yield page
    context.close()


def draw(page, points) -> None:
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for k in range(1, 11):
            page.mouse.move(box["x"] + x0 + (x1 - x0) * k / 10, box["y"] + y0 + (y1 - y0) * k / 10)
    page.mouse.up()


@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_a_drawn_digit_gets_the_right_class(page, console_url, digit):
    page.goto(f"{console_url}/try")
    page.click("#clear")
    draw(page, DIGITS[digit])
    page.click("[data-testid=predict]")
    # A locator assertion, not wait_for_function: the console's CSP forbids evaluating strings.
    expect(page.locator("[data-testid=class]")).to_have_text(re.compile(r"^\d$"), timeout=120_000)
    assert page.text_content("[data-testid=message]") == ""
    assert page.text_content("[data-testid=class]") == str(digit)
    assert "mnist/v2" in page.text_content("#served")
    assert page.problems == []


def test_setting_the_default_through_the_ui_changes_the_registry(page, console_url, state):
    registry = registry_for(state.settings)
    assert registry.default_version() == "v2"
    page.goto(f"{console_url}/models/v1")
    page.click("[data-testid=set-default]")
    page.click("[data-testid=confirm]")
    assert "v1 is now the default version" in page.text_content("[data-testid=done]")
    assert registry.default_version() == "v1"
    page.goto(f"{console_url}/models/v2")
    page.click("[data-testid=set-default]")
    page.click("[data-testid=confirm]")
    assert registry.default_version() == "v2"
    assert page.problems == []


def test_lineage_clicks_through_to_the_bigquery_table(page, console_url, state):
    table = state.settings.table_id("train")
    page.goto(f"{console_url}/lineage")
    page.click(f"[data-testid='table-{table}']")
    page.wait_for_url(f"**/data/tables/{table}")
    assert table in page.text_content("[data-testid=table-title]")
    assert page.text_content("[data-testid=table-rows]") == "100"  # counted by BigQuery
    page.click("[data-testid=version-v2]")
    page.wait_for_url("**/models/v2")
    assert page.problems == []


def test_the_main_pages_have_no_browser_console_errors(page, console_url, state):
    run = state.run_ids[0]
    for path in ("/", "/runs", f"/runs/{run}", f"/runs/compare?a={run}&b={state.run_ids[1]}", "/models",
                 "/models/v1", "/lineage/v1", "/data", "/data/tables/train", f"/data/runs/{run}", "/serving",
                 "/try", "/models/v1/confirm?action=delete", "/models/v404"):
        page.goto(f"{console_url}{path}")
        page.wait_for_load_state("load")
    # The 404 page's own request is reported by Chromium as a failed resource; nothing else may be.
    assert [p for p in page.problems if "404" not in p] == []
