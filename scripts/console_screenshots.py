"""Screenshots of the console's main pages into docs/console/, with Debian's chromium (Playwright).

The console runs on a sample state (mlpipe.console.sample_store: real ML Metadata store, real registry
of a small trained MNIST model) with a real BigQuery emulator holding a slice of MNIST; a few digits
are drawn on the Try it page so that the prediction log and the Serving page have something to show.

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlpipe.config import load_settings  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402

SHOTS = [("overview", "/"), ("runs", "/runs"), ("run", "/runs/{run}"), ("models", "/models"),
         ("version", "/models/{version}"), ("lineage", "/lineage/{version}"), ("data", "/data"),
         ("table", "/data/tables/train"), ("serving", "/serving")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args(argv)
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    from mlpipe.bigquery import service
    from mlpipe.bigquery.load import load_mnist_tables
    from mlpipe.console.app import create_app
    from mlpipe.console.sample_store import build_sample_state
    from tests.console.test_browser import CHROMIUM, DIGITS, draw
    from tests.console.trained_model import train_digit_model

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp:
        settings = load_settings(environ={}, state_dir=Path(tmp) / "state", bq_port=free_loopback_port(),
                                 bq_grpc_port=free_loopback_port())
        service.start(settings)
        try:
            load_mnist_tables(settings, limit=2000)
            model = train_digit_model(Path(tmp) / "model")
            sample = build_sample_state(settings, runs=12, versions=4, saved_model=model)
            server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.port}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120_000)
                page.goto(f"{url}/try")
                for digit in (7, 1, 0):
                    page.click("#clear")
                    draw(page, DIGITS[digit])
                    page.click("[data-testid=predict]")
                    expect(page.locator("[data-testid=class]")).to_have_text(str(digit), timeout=120_000)
                page.screenshot(path=str(args.out / "try.png"))
                page.wait_for_timeout(4000)  # the in-process serving app's prediction log flushes every 2 s
                for name, path in SHOTS:
                    page.goto(url + path.format(run=sample.run_ids[0], version=sample.versions[-1]))
                    page.screenshot(path=str(args.out / f"{name}.png"), full_page=name in ("lineage", "run"))
                    print(f"wrote {args.out / name}.png")
                browser.close()
            server.shutdown()
        finally:
            service.stop(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
