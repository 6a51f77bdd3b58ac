"""The HTML status page in a real browser: headless Chromium renders it, DOM and screenshot.

Debian's `chromium` package (`apt-get install -y chromium`); where no Chromium is
installed the tests skip and say so (`.ci/run` does not install it: too slow for
every run). With REGENERATE_GOLDEN=1 the screenshot is copied to
docs/status-page.png, the README's picture.

Chromium's headless mode, `--screenshot` and `--dump-dom`:
https://developer.chrome.com/docs/chromium/headless (the command-line switches).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from tests.gitrepo import PROJECT
from tests.statuspage_support import COMPANY, DEMO_IDS, page, state_repo

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH: install Debian's chromium package to run the browser tests",
)
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"
SCREENSHOT = PROJECT / "docs" / "status-page.png"
READY_GREEN = (0x1A, 0x7F, 0x37)  # .badge.ready in the page's CSS
FAILED_RED = (0xCF, 0x22, 0x2E)  # .badge.failed


def chromium(tmp_path: Path, *args: str) -> str:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # root in a container has no user namespace to sandbox with
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class _Rendered(HTMLParser):
    """The demo rows and their first cell's text, as the browser's DOM has them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.company_cells: list[str] = []
        self._in_company = False
        self.script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.script = True
        if tag == "tr" and found.get("data-demo"):
            self.rows.append(found["data-demo"] or "")
        self._in_company = tag == "td" and found.get("data-label") == "Company"

    def handle_data(self, data: str) -> None:
        if self._in_company:
            self.company_cells.append(data)
            self._in_company = False


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    tmp_path = tmp_path_factory.mktemp("status-page-browser")
    work = state_repo(tmp_path)
    code, html, err = page(work, "--format", "html")
    assert code == 0, err
    target = tmp_path / "status.html"
    target.write_text(html)
    shot = tmp_path / "status-page.png"
    chromium(tmp_path, "--window-size=1280,960", f"--screenshot={shot}", target.as_uri())
    dom = chromium(tmp_path, "--dump-dom", target.as_uri())
    return target, shot, dom


def test_the_browser_renders_one_row_per_demo(rendered: tuple[Path, Path, str]) -> None:
    _, _, dom = rendered
    parsed = _Rendered()
    parsed.feed(dom)
    assert parsed.rows == list(DEMO_IDS)
    assert not parsed.script  # the `<script>` company stayed text in the DOM too
    assert COMPANY in parsed.company_cells


def test_the_screenshot_shows_the_table(rendered: tuple[Path, Path, str]) -> None:
    _, shot, _ = rendered
    with Image.open(shot) as image:
        assert image.size == (1280, 960)
        colours = set(image.convert("RGB").get_flattened_data())
    # the ready and failed badges were painted: the table is on screen, not a blank page
    assert READY_GREEN in colours and FAILED_RED in colours
    if REGENERATE:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_a_phone_gets_the_card_layout(tmp_path: Path, rendered: tuple[Path, Path, str]) -> None:
    target, _, _ = rendered
    shot = tmp_path / "phone.png"
    chromium(tmp_path, "--window-size=390,844", f"--screenshot={shot}", target.as_uri())
    with Image.open(shot) as image:
        assert image.size == (390, 844)
        colours = set(image.convert("RGB").get_flattened_data())
    # the first card (demo-a, ready) fits a phone's screen: its badge is visible
    assert READY_GREEN in colours
