"""The verify page in a real browser: headless Chromium (Debian's package, which `.ci/run` installs)
driven by Playwright for Python, against ``anima serve`` on a loopback port. It uploads a stamped clip
and reads the verdict and the signer from the page, then the same clip re-encoded (manifest
stripped), whose signer now comes from the manifest the ledger kept.
``ANIMA_SERVE_SCREENSHOT=docs/serve.png`` also saves a screenshot of that page (the README's)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'anima[serve]'")
pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (the dev extra)")

import uvicorn
from playwright.sync_api import sync_playwright

from anima import Anima, StampResult
from anima.config import Settings
from anima.media import read_video, write_video
from anima.serve import ServeSettings, create_app

CHROMIUM = os.environ.get("ANIMA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# As the machine's probe ran it: no sandbox (CI runs as root), and no calls home from a closed network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install chromium; .ci/run does it)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server(studio: Anima, settings: Settings) -> Iterator[str]:
    app = create_app(studio, ServeSettings(trust=(settings.local_ca_cert,)))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def stamped(studio: Anima, long_clip: Path, still: Path, tmp_path: Path) -> StampResult:
    return studio.stamp(long_clip, tmp_path / "interview.mp4", reference=still)


def _reencoded(path: Path, folder: Path) -> Path:
    video = read_video(path)
    out = folder / "reuploaded.mp4"
    write_video(out, video.frames, fps=video.fps, crf=28)
    return out


def test_a_person_uploads_a_stamped_clip_and_reads_verdict_and_signer(
    live_server: str, stamped: StampResult, tmp_path: Path
) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            blocked: list[str] = []
            page.on(
                "console", lambda message: blocked.append(message.text) if "Content" in message.text else None
            )
            page.goto(live_server + "/")
            assert page.title() == "Anima verify"
            page.set_input_files("#file", str(stamped.output))
            assert page.text_content("#file-label") == "interview.mp4"  # the page's script ran
            with page.expect_navigation():
                page.click("#submit")
            verdict = page.locator("#verdict")
            assert verdict.get_attribute("data-verdict") == "anima-generated"
            assert "Made with Anima" in verdict.inner_text()
            assert page.text_content("#signer").strip() == "Test Studio Anima signer"
            assert stamped.stamp_id in page.text_content("#watermark")
            assert page.locator(".thumbs img").count() >= 1
            assert not blocked, blocked  # nothing the page needs is refused by its own CSP

            page.click("a.again")  # the same clip after a re-upload stripped its manifest
            page.set_input_files("#file", str(_reencoded(stamped.output, tmp_path)))
            with page.expect_navigation():
                page.click("#submit")
            found = page.locator("#verdict").get_attribute("data-verdict")
            assert found == "anima-generated", page.text_content("#watermark")
            assert "none in the file" in page.text_content("#manifest")
            assert page.text_content("#durable-signer").strip() == "Test Studio Anima signer"
            screenshot = os.environ.get("ANIMA_SERVE_SCREENSHOT")
            if screenshot:
                page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
