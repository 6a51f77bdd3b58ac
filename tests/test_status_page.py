"""`democtl status-page`: Markdown and HTML from a real state repository, same bytes, no secret."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

from markupsafe import escape  # what Jinja2 autoescape uses

from tests.gitrepo import commit_as, demo_yaml, origin_and_clone, sample_settings
from tests.statuspage_support import (
    ANON_KEY,
    BAD_RULE,
    COMPANY,
    CYCLE,
    DEMO_IDS,
    TOKEN,
    page,
    state_repo,
)


class _Rows(HTMLParser):
    """The demo rows of the page and every tag or attribute that could fetch or run."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.tags: set[str] = set()
        self.fetching: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if tag == "tr" and found.get("data-demo"):
            self.rows.append(found["data-demo"] or "")
        for name in ("src", "srcset", "poster", "data"):
            if name in found:
                self.fetching.append((tag, name))
        if tag == "link":
            self.fetching.append((tag, "href"))


def test_markdown_shows_every_demo_the_queue_capacity_and_invalid_files(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    code, out, err = page(work)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| `demo-")]
    assert [re.match(r"\| `([^`]+)`", r).group(1) for r in rows] == list(DEMO_IDS)  # type: ignore[union-attr]
    ready = next(r for r in rows if r.startswith("| `demo-a`"))
    # phase with its symbol and conditions, owner, links, expiry, last change from git
    assert "✅ ready<br>Ready=True (AllHealthy)" in ready
    assert "[portal](https://demo-a-portal.splits.network)" in ready
    assert "alice@splits.network" in ready
    assert "| 1h30m | 2026-11-25T12:00:00Z |" in ready
    assert "ready at 2026-11-25T10:05:00Z" in ready
    # the company is text, not HTML GitHub would run or Markdown it would format
    assert r"| \<script\>alert(1)\</script\> &amp; Co \| Ltd |" in ready
    assert len(re.split(r"(?<!\\)\|", ready)) == 13  # 11 cells: the company's pipe is text
    assert "<script>" not in out
    failed = next(r for r in rows if r.startswith("| `demo-c`"))
    assert "❌ failed" in failed and "quota exceeded" in failed
    assert "teardown pending" in next(r for r in rows if r.startswith("| `demo-gone`"))
    assert "## Queue\n\n1. `demo-q` (small)\n" in out
    assert "| used | " in out and "| free | " in out
    # the invalid file as `democtl validate` reports it: file:line: field: rule
    assert f"- {BAD_RULE}\n" in out
    assert "last cycle that changed something: 2026-11-25T10:05:00Z (commit " in out


def test_html_is_self_contained_and_escapes_everything(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    code, out, err = page(work, "--format", "html")
    assert code == 0, err
    parser = _Rows()
    parser.feed(out)
    assert parser.rows == list(DEMO_IDS)
    # the company name `<script>` is text: no script element, no asset, no external style
    assert "script" not in parser.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co | Ltd" in out
    assert COMPANY not in out
    assert parser.fetching == []
    assert "@import" not in out and "url(" not in out
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in out
    assert f"<li><code>{escape(BAD_RULE)}</code></li>" in out
    assert '<a href="https://demo-a-portal.splits.network">portal</a>' in out


def test_same_input_same_bytes_and_no_write_when_unchanged(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    for fmt in ("markdown", "html"):
        first, second = page(work, "--format", fmt)[1], page(work, "--format", fmt)[1]
        assert first == second
    target = tmp_path / "STATUS.md"
    code, _, err = page(work, "--output", str(target))
    assert code == 0, err
    written = target.read_bytes()
    assert written == page(work)[1].encode()
    os.utime(target, (1_000_000_000, 1_000_000_000))
    assert page(work, "--output", str(target))[0] == 0
    assert target.stat().st_mtime == 1_000_000_000  # same bytes: not rewritten


def test_a_demo_waiting_for_capacity_is_not_an_invalid_file(tmp_path: Path) -> None:
    settings = sample_settings().replace(b"maxConcurrentDemos: 20", b"maxConcurrentDemos: 1")
    _, work = origin_and_clone(tmp_path, files={"reconciler.yaml": settings})
    commit_as(
        work,
        when=CYCLE,
        files={f"demos/{i}.yaml": demo_yaml(i) for i in ("demo-first", "demo-second")},
    )
    code, out, err = page(work)
    assert code == 0, err
    second = next(line for line in out.splitlines() if line.startswith("| `demo-second`"))
    assert "🆕 new" in second and "waits for capacity" in second
    assert "## Invalid demo files\n\nNone.\n" in out


def test_the_last_cycle_is_democtls_newest_commit_not_a_persons(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    commit_as(work, when=CYCLE + timedelta(hours=1), files={"notes.txt": "unrelated\n"})
    assert "last cycle that changed something: 2026-11-25T10:05:00Z" in page(work)[1]
    (tmp_path / "fresh").mkdir()
    _, fresh = origin_and_clone(tmp_path / "fresh")
    assert "last cycle that changed something: never" in page(fresh)[1]


def test_the_clock_changes_the_page_only_through_now(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    later = page(work, "--now", "2026-11-25T11:45:00Z")[1]
    assert "| 15m | 2026-11-25T12:00:00Z |" in later
    assert "Generated 2026-11-25T11:45:00Z" in later


def test_no_secret_reaches_the_page(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    env = {"SUPABASE_ACCESS_TOKEN": TOKEN, "CLOUDFLARE_API_TOKEN": TOKEN, "GITHUB_TOKEN": TOKEN}
    for fmt in ("markdown", "html"):
        code, out, err = page(work, "--format", fmt, env=env)
        assert code == 0, err
        assert "demo-a" in out
        assert ANON_KEY not in out and TOKEN not in out and TOKEN not in err


def test_unwritable_output_is_one_clear_line(tmp_path: Path) -> None:
    work = state_repo(tmp_path)
    code, out, err = page(work, "--output", str(tmp_path / "missing" / "STATUS.md"))
    assert code == 1
    assert out == ""
    assert err.startswith("democtl: cannot write ") and "Traceback" not in err


def test_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = page(tmp_path)
    assert code == 2
    assert "reconciler.yaml" in err
