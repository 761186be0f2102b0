"""Headless Chromium for tests that look at what people look at: the evaluation report and the MLflow UI.

Playwright drives the distribution's `chromium` (Debian's package), never a browser of its own download, so
the tests need nothing from outside the package mirrors. The session gets one browser: found on PATH, or
installed with apt-get when the tests run as root (a fresh container); where neither works the browser tests
skip and say why. Every request a page makes is recorded, and any that would leave the machine is aborted,
so a test can assert that a page works offline: only file:, data:, blob: and loopback URLs are allowed.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

APT_PACKAGE = "chromium"
VIEWPORT = {"width": 1200, "height": 900}
LOCAL_SCHEMES = {"file", "data", "blob"}


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _apt_get(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # wait for another apt/dpkg run (a second pytest, unattended upgrades) instead of failing on its lock
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)


def _last_lines(result: subprocess.CompletedProcess, count: int = 8) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-count:])


def chromium_or_skip() -> str:
    """The path of a Chromium binary; installs Debian's package when missing and allowed, else skips."""
    found = find_chromium()
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip(f"no chromium on PATH and no apt-get to install it ({APT_PACKAGE})")
    if os.geteuid() != 0:
        pytest.skip(f"no chromium on PATH; install it as root: apt-get install -y --no-install-recommends {APT_PACKAGE}")
    install = ("install", "-y", "--no-install-recommends", APT_PACKAGE)
    result = _apt_get(*install)
    if result.returncode != 0:  # most often stale or missing package lists in a fresh container
        update = _apt_get("update")
        result = _apt_get(*install) if update.returncode == 0 else update
    found = find_chromium()
    if result.returncode != 0 or not found:
        pytest.skip(f"could not install chromium with apt-get (exit {result.returncode}):\n{_last_lines(result)}")
    return found


def is_local_url(url: str) -> bool:
    """file:, data:, blob: or an http(s)/ws(s) URL on a loopback host; anything else would leave the machine."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    if parts.scheme not in {"http", "https", "ws", "wss"} or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@dataclass
class RecordedPage:
    """A page and every URL it (and its workers) asked for, in order."""

    page: object
    requests: list[str] = field(default_factory=list)

    @property
    def outside_requests(self) -> list[str]:
        return [url for url in self.requests if not is_local_url(url)]


@contextmanager
def browser_session(executable: str) -> Iterator[object]:
    """A headless Chromium (Playwright's Browser) launched from `executable`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # /dev/shm is tiny in many containers; Chromium's renderer crashes there without this flag
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def recorded_page(browser, viewport: dict[str, int] | None = None) -> Iterator[RecordedPage]:
    """A fresh context and page that record every request and abort those that would leave the machine."""
    context = browser.new_context(viewport=viewport or VIEWPORT)
    recorded = RecordedPage(page=None)
    context.on("request", lambda request: recorded.requests.append(request.url))
    context.route(lambda url: not is_local_url(url), lambda route: route.abort("blockedbyclient"))
    page = context.new_page()
    page.on("websocket", lambda socket: recorded.requests.append(socket.url))
    recorded.page = page
    try:
        yield recorded
    finally:
        context.close()


def save_screenshot(page, name: str, out_dirs: list[Path], *, full_page: bool, colors: int = 64) -> list[Path]:
    """A small PNG of the page (palette-quantised, optimised) in each of `out_dirs`."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(page.screenshot(full_page=full_page))).convert("RGB")
    small = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    written = []
    for out in out_dirs:
        out.mkdir(parents=True, exist_ok=True)
        small.save(out / name, optimize=True)
        written.append(out / name)
    return written


def screenshot_dirs(tmp_path: Path) -> list[Path]:
    """The test's own folder, and BAYLING_SCREENSHOT_DIR when set (where docs/img/ is refreshed from)."""
    extra = os.environ.get("BAYLING_SCREENSHOT_DIR")
    return [tmp_path / "screenshots"] + ([Path(extra)] if extra else [])
