"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real
``mess serve`` seeded through its API (one server for the module, one browser per session).

Without Chromium or Playwright these tests fail in CI (``CI`` set) and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest

from tests.e2e.conftest import ADMIN, BIN, Server
from tests.ui.seed import EVIL, Seeded, seed

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("MESS_TEST_CHROMIUM", "/usr/bin/chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; the dev extra)")
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Seeded]]:
    tmp = tmp_path_factory.mktemp("ui-browser")
    server = Server(tmp / "data", log=tmp / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield server, seed(client, ADMIN, tmp)
    finally:
        server.stop()


class Watched:
    """A page that records console errors, uncaught exceptions and dialogs."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", self._uncaught)
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _uncaught(self, error: Any) -> None:
        self.errors.append(str(error))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(accept_downloads=True)
    yield ctx
    ctx.close()


def login(watched: Watched, server: Server, token: str) -> None:
    page = watched.page
    page.goto(f"{server.url}/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/ui/")


def test_without_a_session_pages_redirect_to_the_login_form(
    context: Any, served: tuple[Server, Seeded]
) -> None:
    server, seeded = served
    watched = Watched(context)
    for path in ("/ui/", f"/ui/supernets/{seeded.supernet_id}", "/ui/devices/pi-5", "/ui/tokens"):
        watched.page.goto(server.url + path)
        assert watched.page.url == f"{server.url}/ui/login", path
    assert watched.errors == []


def test_every_page_in_the_browser(
    context: Any, served: tuple[Server, Seeded], tmp_path: Path
) -> None:
    server, seeded = served
    watched = Watched(context)
    page = watched.page
    login(watched, server, seeded.engineer)

    # overview, and its numbers refreshed in place
    assert page.locator("#devices tbody tr").count() == 2
    assert "onnxruntime 1.20.1" in page.inner_text("#devices")
    stamp = page.inner_text(".refreshed")
    page.evaluate("document.querySelector('#devices').dataset.mark = 'old'")
    page.wait_for_function(
        "s => document.querySelector('.refreshed').textContent.trim() !== s",
        arg=stamp,
        timeout=15000,
    )
    assert page.url == f"{server.url}/ui/"  # no reload: the fragment was swapped in
    assert page.evaluate("document.querySelector('#devices').dataset.mark") is None

    # the supernet page: one series per device, as many points as the API's front
    page.click(f"a[href='/ui/supernets/{seeded.supernet_id}']")
    page.wait_for_selector("#plot svg")
    for device, answer in seeded.answers.items():
        points = page.locator(f"circle.point[data-device='{device}']")
        assert points.count() == len(answer["front"]), device
        assert page.locator(f"rect.original[data-device='{device}']").count() == 1
    page.locator("circle.point[data-device='pi-5']").first.hover()
    tip = page.inner_text("#tip")
    assert page.is_visible("#tip") and tip.startswith("pi-5") and "mIoU" in tip
    assert tip.rstrip().endswith("final") or "crm0" in tip  # the configuration

    front = seeded.answers["pi-5"]["front"]
    budget = (front[0]["expected_cost"] + front[-1]["expected_cost"]) / 2
    page.fill("#budget", repr(budget))
    link = page.locator("tr[data-device='pi-5'] a.pick-link")
    assert page.locator("a.pick-link").count() == 2
    link.click()
    page.wait_for_url("**/ui/configurations/*")
    query = subprocess.run(
        [
            *(str(BIN / "mess"), "query", "--server", server.url, "--token", seeded.engineer),
            *("--supernet", seeded.supernet_id, "--device", "pi-5"),
            *("--budget-ms", repr(budget), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert query.returncode == 0, query.stderr
    assert page.url.endswith("/ui/configurations/" + json.loads(query.stdout)["configuration_id"])

    # the configuration page and its model
    assert page.locator("#exits tbody tr").count() >= 1
    with page.expect_download() as download:
        page.click("#download")
    model_path = tmp_path / "model.onnx"
    download.value.save_as(model_path)
    onnx.checker.check_model(onnx.load(str(model_path)))

    # the device page, its part table sorted by a click
    page.goto(f"{server.url}/ui/devices/pi-5")
    page.click("#parts thead th:nth-child(3)")
    values = [float(v) for v in page.locator("#parts tbody td:nth-child(3)").all_inner_texts()]
    assert values == sorted(values) and len(values) > 3
    page.click("#parts thead th:nth-child(3)")
    values = [float(v) for v in page.locator("#parts tbody td:nth-child(3)").all_inner_texts()]
    assert values == sorted(values, reverse=True)
    assert page.locator("#wholes tbody tr").count() >= 1
    assert page.locator("#jobs tbody tr").count() == 2

    # an engineer has no tokens page
    response = page.goto(f"{server.url}/ui/tokens")
    assert response is not None and response.status == 403
    watched.errors = [e for e in watched.errors if "403" not in e]  # that page's own status
    assert watched.errors == [] and watched.dialogs == []


def test_names_holding_markup_are_shown_escaped(
    context: Any, served: tuple[Server, Seeded]
) -> None:
    server, seeded = served
    watched = Watched(context)
    login(watched, server, seeded.engineer)
    assert EVIL in watched.page.inner_text("main")
    watched.page.goto(f"{server.url}/ui/supernets/{seeded.evil_supernet_id}")
    assert watched.page.inner_text("h1 .name") == EVIL
    assert watched.page.locator("main script").count() == 0
    assert watched.dialogs == [] and watched.errors == []


def test_admins_create_a_token_shown_once(context: Any, served: tuple[Server, Seeded]) -> None:
    server, _ = served
    watched = Watched(context)
    page = watched.page
    login(watched, server, ADMIN)
    page.click("a[href='/ui/tokens']")
    page.fill("input[name=name]", "browser-made")
    page.select_option("select[name=role]", "agent")
    page.click("form.inline button[type=submit]")
    secret = page.inner_text("#new-token")
    assert secret.startswith("mess_")
    assert httpx.get(
        f"{server.url}/v1/devices", headers={"Authorization": f"Bearer {secret}"}
    ).is_success
    page.goto(f"{server.url}/ui/tokens")
    assert secret not in page.content()
    assert watched.errors == []


def test_a_cross_site_post_without_the_csrf_token_is_refused(
    context: Any, served: tuple[Server, Seeded]
) -> None:
    server, _ = served
    watched = Watched(context)
    page = watched.page
    login(watched, server, ADMIN)
    # another origin on the same host (same site: the SameSite cookie is sent along)
    evil = f"http://127.0.0.1:{server.port + 1 if server.port < 65535 else server.port - 1}"
    form = (
        f'<form id="f" method="post" action="{server.url}/ui/tokens">'
        '<input name="name" value="forged"><input name="role" value="admin"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(f"{evil}/**", lambda route: route.fulfill(content_type="text/html", body=form))
    with page.expect_navigation(url=f"{server.url}/ui/tokens") as navigation:
        page.goto(f"{evil}/attack")
    response = navigation.value
    assert response is not None and response.status == 403
    # the page's own request, with the session but without the token: refused as well
    refused = page.request.post(f"{server.url}/ui/tokens", form={"name": "forged", "role": "admin"})
    assert refused.status == 403
    names = [
        t["name"]
        for t in httpx.get(
            f"{server.url}/v1/tokens", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()["items"]
    ]
    assert "forged" not in names
