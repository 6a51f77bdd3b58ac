"""The status page: every demo, the queue, invalid files and capacity, as Markdown or HTML.

Owns `StatusPage` (what the page says, built by `build_page`) and its two
renderings: `markdown()` (GitHub renders it) and `html()` (one self-contained
page from `templates/statuspage/page.html.j2`, Jinja2 with autoescape on, inline
CSS, no external asset). Pure: the state, the capacity report, the audit trail
and the time of the last cycle come in as values, `now` too, so the same input
gives the same bytes. Only fields chosen here reach the page: never a status
file's keys wholesale, so no key or token can slip onto it. Imports the model,
validate's Problem, capacity's report, inventory's rows and quantity formatting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import jinja2

from reconciler.capacity import CapacityReport, capacity_report, live_profiles
from reconciler.inventory import PHASE_INVALID, PHASE_NEW, PHASE_UNKNOWN, demo_rows
from reconciler.model import DemoStatus, Phase, Settings
from reconciler.quantity import display_cpu, display_memory
from reconciler.validate import LoadedDemo

TEMPLATE_DIR = Path(str(resources.files("reconciler") / "templates" / "statuspage"))

# GitHub renders these in STATUS.md; the HTML page uses coloured badges instead, since
# a bare machine (the screenshot's headless Chromium) may have no emoji font
SYMBOLS = {
    Phase.READY.value: "✅",
    Phase.CREATING.value: "⏳",
    Phase.PENDING.value: "🕒",
    Phase.DEGRADED.value: "⚠️",
    Phase.FAILED.value: "❌",
    Phase.DESTROYING.value: "🗑️",
    PHASE_NEW: "🆕",
    PHASE_INVALID: "⛔",
    PHASE_UNKNOWN: "❓",
}


@dataclass(frozen=True)
class PageDemo:
    id: str
    type: str
    profile: str
    owner: str
    company: str
    phase: str
    conditions: tuple[str, ...]
    links: tuple[tuple[str, str], ...]  # (name, url)
    expires_in: str
    expires_at: str
    last_change: str  # what happened last, from the audit trail
    last_change_at: str
    queue_position: int | None
    problems: tuple[str, ...]

    @property
    def symbol(self) -> str:
        return SYMBOLS.get(self.phase, "")


@dataclass(frozen=True)
class StatusPage:
    generated_at: str
    last_cycle: str
    demos: tuple[PageDemo, ...]
    invalid_files: tuple[str, ...]  # `file:line: field: rule`, as democtl validate says
    capacity: tuple[tuple[str, str, str, str], ...]  # (row, cpu, memory, demos)

    @property
    def queue(self) -> tuple[PageDemo, ...]:
        waiting = [d for d in self.demos if d.queue_position is not None]
        return tuple(sorted(waiting, key=lambda d: (d.queue_position or 0, d.id)))

    @property
    def phase_counts(self) -> tuple[tuple[str, int], ...]:
        counts: dict[str, int] = {}
        for demo in self.demos:
            counts[demo.phase] = counts.get(demo.phase, 0) + 1
        return tuple(sorted(counts.items()))


def _time(when: datetime | None) -> str:
    return when.isoformat().replace("+00:00", "Z") if when else "-"


def _conditions(status: DemoStatus | None) -> tuple[str, ...]:
    if status is None:
        return ()
    return tuple(
        f"{c.type}={c.status} ({c.reason})" if c.reason else f"{c.type}={c.status}"
        for c in sorted(status.conditions, key=lambda c: c.type)
    )


def _problems(item: LoadedDemo | None, status: DemoStatus | None) -> tuple[str, ...]:
    found: list[str] = []
    if item is not None:
        found.extend(str(p) for p in item.errors)
    if status is not None:
        if status.phase in (Phase.FAILED, Phase.DEGRADED) and status.message:
            found.append(status.message)
        stalled = [c for c in status.conditions if c.type == "Stalled" and c.status == "True"]
        found.extend(c.message for c in stalled if c.message and c.message != status.message)
        failing = [name for name, ok in status.healthChecks.model_dump().items() if not ok]
        if status.phase == Phase.DEGRADED and failing:
            found.append("failing checks: " + ", ".join(failing))
        if status.nextAttemptAt is not None and status.attempts:
            found.append(f"attempt {status.attempts}, next at {_time(status.nextAttemptAt)}")
    return tuple(found)


def _note(phase: str, note: str) -> tuple[str, ...]:
    # an invalid file's row lists its problems already; `list`'s note only counts them
    return (note,) if note and phase != PHASE_INVALID else ()


def _links(urls: Sequence[str], named: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if named:
        return tuple(sorted(named.items()))
    return tuple((url.split("//", 1)[-1].split(".", 1)[0], url) for url in urls)


def _capacity_rows(report: CapacityReport) -> tuple[tuple[str, str, str, str], ...]:
    free_demos = max(report.max_concurrent - report.live_demos, 0)
    return (
        (
            "used",
            display_cpu(report.used_cpu),
            display_memory(report.used_memory),
            str(report.live_demos),
        ),
        ("free", display_cpu(report.free_cpu), display_memory(report.free_memory), str(free_demos)),
        (
            f"allocatable ({100 - report.reserved_percent:g}%)",
            display_cpu(report.allocatable_cpu),
            display_memory(report.allocatable_memory),
            str(report.max_concurrent),
        ),
    )


def page_capacity(
    settings: Settings, demos: Sequence[LoadedDemo], statuses: Mapping[str, DemoStatus]
) -> CapacityReport:
    """Capacity as `democtl capacity` counts it, so the page and the command agree."""
    files = {d.id: d.demo.spec.profile for d in demos if d.demo is not None}
    return capacity_report(settings, live_profiles(files, statuses))


def build_page(
    settings: Settings,
    demos: Sequence[LoadedDemo],
    statuses: Mapping[str, DemoStatus],
    *,
    untrusted: Set[str],
    created_at: Mapping[str, datetime],
    capacity: CapacityReport,
    last_changes: Mapping[str, tuple[datetime, str]],
    last_cycle: tuple[datetime, str] | None,
    now: datetime,
) -> StatusPage:
    """What the page says. `last_changes` maps a demo id to its newest (time, action)."""
    files = {item.id: item for item in demos}
    rows = demo_rows(
        settings,
        demos,
        statuses,
        untrusted=untrusted,
        created_at=created_at,
        now=now,
    )
    page_demos = []
    for row in rows:
        item, status = files.get(row.id), statuses.get(row.id)
        branding = item.demo.spec.branding if item and item.demo else None
        change = last_changes.get(row.id)
        page_demos.append(
            PageDemo(
                id=row.id,
                type=row.type,
                profile=row.profile,
                owner=row.owner,
                company=(branding.companyName or "") if branding else "",
                phase=row.phase,
                conditions=_conditions(status),
                links=_links(row.urls, status.urls if status else None),
                expires_in=row.expires_in,
                expires_at=_time(row.expires_at),
                last_change=change[1] if change else "-",
                last_change_at=_time(change[0]) if change else "",
                queue_position=status.queuePosition if status else None,
                problems=_problems(item, status) + _note(row.phase, row.note),
            )
        )
    invalid = sorted(str(p) for item in demos for p in item.errors)
    cycle = f"{_time(last_cycle[0])} (commit {last_cycle[1][:12]})" if last_cycle else "never"
    return StatusPage(
        generated_at=_time(now),
        last_cycle=cycle,
        demos=tuple(page_demos),
        invalid_files=tuple(invalid),
        capacity=_capacity_rows(capacity),
    )


def state_file(
    settings: Settings,
    demos: Sequence[LoadedDemo],
    statuses: Mapping[str, DemoStatus],
    *,
    created_at: Mapping[str, datetime],
    now: datetime,
) -> bytes:
    """STATUS.md as a cycle commits it: the timeless Markdown of the state after the cycle.

    No status is untrusted any more: the cycle rebuilt or removed each of them.
    """
    page = build_page(
        settings,
        demos,
        statuses,
        untrusted=frozenset(),
        created_at=created_at,
        capacity=page_capacity(settings, demos, statuses),
        last_changes={},
        last_cycle=None,
        now=now,
    )
    return markdown(page, timeless=True).encode()


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|<>#!~])")


def _md(text: str) -> str:
    """A table cell's text: Markdown and inline HTML neutralised, `&` as an entity."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;"))


def _md_link(name: str, url: str) -> str:
    # a URL with a space or a parenthesis would end the link early: percent-encode them
    safe = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C")
    return f"[{_md(name)}]({safe.replace('>', '%3E')})"


def markdown(page: StatusPage, *, timeless: bool = False) -> str:
    """The page as GitHub-flavoured Markdown: `--format markdown`, or the cycle's STATUS.md.

    `timeless` leaves out what moves without the state moving: the time it was
    generated, "expires in", and what git says (the last change, the last
    cycle), which the cycle's own commit would change again. What is left
    changes only with a demo file or a status, so a cycle writes STATUS.md in
    the commit it makes anyway, and a cycle that changes nothing writes nothing.
    """
    out = ["# Demo environments", ""]
    if not timeless:
        out += [
            f"Generated {page.generated_at} · last cycle that changed something: {page.last_cycle}",
            "",
        ]
    heads = ["Demo", "Phase", "Type", "Profile", "Owner", "Company", "Links"]
    heads += ["Expires at"] if timeless else ["Expires in", "Expires at", "Last change"]
    heads.append("Problems")
    if page.demos:
        out += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for d in page.demos:
            phase = f"{d.symbol} {_md(d.phase)}"
            if d.conditions:
                phase += "<br>" + "<br>".join(_md(c) for c in d.conditions)
            if d.queue_position:
                phase += f"<br>\\#{d.queue_position} in the queue"
            cells = [
                f"`{d.id}`",
                phase,
                _md(d.type),
                _md(d.profile),
                _md(d.owner),
                _md(d.company) or "-",
                " ".join(_md_link(n, u) for n, u in d.links) or "-",
            ]
            if timeless:
                cells.append(_md(d.expires_at))
            else:
                last = f"{d.last_change} at {d.last_change_at}" if d.last_change_at else "-"
                cells += [_md(d.expires_in), _md(d.expires_at), _md(last)]
            cells.append("<br>".join(_md(p) for p in d.problems) or "-")
            out.append("| " + " | ".join(cells) + " |")
    else:
        out.append("No demos.")
    out += ["", "## Queue", ""]
    if page.queue:
        out += [f"{d.queue_position}. `{d.id}` ({_md(d.profile)})" for d in page.queue]
    else:
        out.append("Nobody is waiting.")
    out += ["", "## Capacity", "", "| | CPU | Memory | Demos |", "|---|---|---|---|"]
    out += [f"| {' | '.join(_md(c) for c in row)} |" for row in page.capacity]
    out += ["", "## Invalid demo files", ""]
    if page.invalid_files:
        out += [f"- {_md(p)}" for p in page.invalid_files]
    else:
        out.append("None.")
    return "\n".join(out) + "\n"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,  # every value is text from a demo file or a status: escape it all
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def html(page: StatusPage) -> str:
    """The page as one self-contained HTML document (inline CSS, no script, no asset)."""
    return _environment().get_template("page.html.j2").render(page=page)
