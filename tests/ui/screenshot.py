"""Take the README's dashboard screenshot: the supernet page of a seeded service.

    python -m tests.ui.screenshot docs/dashboard.png

Starts ``mess serve`` on a free port with a throw-away data folder, seeds it as the browser
tests do, shows the fronts of both devices with a budget picked, and writes a small PNG.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from PIL import Image

from tests.e2e.conftest import ADMIN, Server
from tests.ui.seed import seed
from tests.ui.test_browser import CHROMIUM


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data").start()
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                seeded = seed(client, ADMIN, Path(tmp))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM)
                page = browser.new_page(viewport={"width": 1000, "height": 600})
                page.goto(f"{server.url}/ui/login")
                page.fill("input[name=token]", seeded.engineer)
                page.click("button[type=submit]")
                page.wait_for_url(f"{server.url}/ui/")
                page.goto(f"{server.url}/ui/supernets/{seeded.supernet_id}")
                front = seeded.answers["pi-5"]["front"]
                budget = (front[0]["expected_cost"] + front[-1]["expected_cost"]) / 2
                page.fill("#budget", f"{budget:.1f}")
                page.locator("#budget-form").scroll_into_view_if_needed()
                page.evaluate("window.scrollTo(0, document.querySelector('h2').offsetTop - 8)")
                page.screenshot(path=str(out))
                browser.close()
        finally:
            server.stop()
    image = Image.open(out).convert("RGB")
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))
