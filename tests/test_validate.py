"""`democtl validate`: every kind of bad input gets file, line, field and rule; nothing else breaks.

Each case writes one broken file beside a valid demo and a demo with a problem of
its own (`demo-late`, ttl over the maximum), so every test also proves that the
other files are still checked. Most cases run in-process through click's
CliRunner; the exit-code and no-traceback cases run `python -m reconciler` as a
real subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.validate import load_demo
from tests.conftest import NOW, PROJECT

NOW_TEXT = NOW.isoformat()

BASE = """\
# yaml-language-server: $schema=../schemas/demo.schema.json
apiVersion: demos.splits.network/v1
kind: Demo
metadata:
  name: {name}
spec:
  type: enterprise
  owner: alice@splits.network
"""
# line numbers in BASE: apiVersion 2, kind 3, metadata 4, name 5, spec 6, type 7, owner 8


def demo(name: str = "demo-bad", extra: str = "") -> str:
    return BASE.format(name=name) + extra


def labelled(entry: str) -> str:
    """A demo-bad file with one `key: value` line under metadata.labels (line 7)."""
    return demo().replace("  name: demo-bad\n", f"  name: demo-bad\n  labels:\n    {entry}\n")


GOOD = demo("demo-good", "  ttl: 2h\n")
LATE = demo("demo-late", "  ttl: 9h\n")
LATE_PROBLEM = ("demos/demo-late.yaml", 9, "spec.ttl", "9h exceeds the maximum of 8h")

BILLION_LAUGHS = """\
apiVersion: demos.splits.network/v1
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    (root / "demos").mkdir(parents=True)
    shutil.copy(PROJECT / "reconciler.yaml", root / "reconciler.yaml")
    (root / "demos" / "demo-good.yaml").write_text(GOOD)
    (root / "demos" / "demo-late.yaml").write_text(LATE)
    return root


@dataclass
class Run:
    code: int
    problems: list[dict[str, object]]
    stdout: str
    stderr: str


def validate(repo: Path, *files: str) -> Run:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["validate", "--repo", str(repo), "--now", NOW_TEXT, "--format", "json", *files]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return Run(result.exit_code, json.loads(result.stdout), result.stdout, result.stderr)


def run_subprocess(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "--repo", str(repo), *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_reported(run: Run, file: str, line: int | None, field: str, fragment: str) -> None:
    matching = [
        p
        for p in run.problems
        if p["file"] == file and p["line"] == line and p["field"] == field
        if fragment in str(p["message"])
    ]
    assert matching, f"no {file}:{line}: {field}: ...{fragment}... in {run.problems}"


def assert_others_checked(run: Run) -> None:
    assert_reported(run, *LATE_PROBLEM)
    assert not [p for p in run.problems if p["file"] == "demos/demo-good.yaml"]


# --- one broken file beside good ones ---------------------------------------------------

CASES = [
    # (id, file name under demos/, content, line, field, message fragment)
    ("not-yaml", "demo-bad.yaml", "apiVersion: [1,\nkind: Demo\n", 3, "", "not valid YAML"),
    ("a-list", "demo-bad.yaml", "- apiVersion\n- kind\n", 1, "", "found a list"),
    ("a-scalar", "demo-bad.yaml", "just some words\n", 1, "", "found a single value"),
    ("empty-file", "demo-bad.yaml", "", 1, "", "file is empty"),
    ("only-comments", "demo-bad.yaml", "# nothing here\n", 1, "", "file is empty"),
    ("alias-bomb", "demo-bad.yaml", BILLION_LAUGHS, 2, "", "anchors are not allowed"),
    ("tabs", "demo-bad.yaml", demo(extra="\tttl: 2h\n"), 9, "", "tab characters"),
    (
        "duplicate-keys",
        "demo-bad.yaml",
        demo(extra="  owner: bob@splits.network\n"),
        9,
        "",
        "duplicate key 'spec.owner'",
    ),
    (
        "wrong-api-version",
        "demo-bad.yaml",
        demo().replace("/v1", "/v2"),
        2,
        "apiVersion",
        "must be 'demos.splits.network/v1'",
    ),
    (
        "wrong-kind",
        "demo-bad.yaml",
        demo().replace("kind: Demo", "kind: Deployment"),
        3,
        "kind",
        "must be 'Demo'",
    ),
    (
        "missing-top-level",
        "demo-bad.yaml",
        demo().split("spec:")[0],
        2,
        "spec",
        "required field is missing",
    ),
    (
        "missing-metadata-name",
        "demo-bad.yaml",
        demo().replace("  name: demo-bad\n", "  labels: {team: sales}\n"),
        4,
        "metadata.name",
        "required field is missing",
    ),
    (
        "missing-spec-field",
        "demo-bad.yaml",
        demo().replace("  owner: alice@splits.network\n", ""),
        6,
        "spec.owner",
        "required field is missing",
    ),
    ("unknown-top-level", "demo-bad.yaml", demo() + "status: ready\n", 9, "status", "unknown"),
    (
        "unknown-metadata-field",
        "demo-bad.yaml",
        demo().replace("  name: demo-bad\n", "  name: demo-bad\n  namespace: x\n"),
        6,
        "metadata.namespace",
        "unknown field",
    ),
    (
        "unknown-spec-field",
        "demo-bad.yaml",
        demo(extra="  replicas: 3\n"),
        9,
        "spec.replicas",
        "unknown",
    ),
    (
        "unknown-branding-field",
        "demo-bad.yaml",
        demo(extra="  branding:\n    companyName: Acme\n    font: Comic Sans\n"),
        11,
        "spec.branding.font",
        "unknown field",
    ),
    (
        "unknown-seed-field",
        "demo-bad.yaml",
        demo(extra="  seed: {size: small, rows: 10}\n"),
        9,
        "spec.seed.rows",
        "unknown field",
    ),
    ("id-capitals", "demo-Bad.yaml", demo("demo-Bad"), 5, "metadata.name", "lowercase"),
    ("id-underscore", "demo-b_d.yaml", demo("demo-b_d"), 5, "metadata.name", "lowercase"),
    ("id-dot", "demo-b.d.yaml", demo("demo-b.d"), 5, "metadata.name", "lowercase"),
    ("id-leading-hyphen", "demo--bad.yaml", demo("demo--bad"), 5, "metadata.name", "leading"),
    ("id-trailing-hyphen", "demo-bad-.yaml", demo("demo-bad-"), 5, "metadata.name", "trailing"),
    ("id-no-prefix", "acme.yaml", demo("acme"), 5, "metadata.name", "after 'demo-'"),
    (
        "id-over-32",
        f"demo-{'a' * 28}.yaml",
        demo(f"demo-{'a' * 28}"),
        5,
        "metadata.name",
        "at most 32 characters",
    ),
    (
        "id-not-file-name",
        "demo-bad.yaml",
        demo("demo-other"),
        5,
        "metadata.name",
        "'demo-other' must equal the file name 'demo-bad'",
    ),
    (
        "unknown-type",
        "demo-bad.yaml",
        demo().replace("type: enterprise", "type: bank"),
        7,
        "spec.type",
        "'recruiting-agency', 'enterprise' or 'startup'",
    ),
    (
        "unknown-profile",
        "demo-bad.yaml",
        demo(extra="  profile: huge\n"),
        9,
        "spec.profile",
        "unknown profile 'huge'; known profiles: load-testing, small",
    ),
    ("ttl-zero", "demo-bad.yaml", demo(extra="  ttl: 0\n"), 9, "spec.ttl", "not a duration"),
    (
        "ttl-zero-hours",
        "demo-bad.yaml",
        demo(extra="  ttl: 0h\n"),
        9,
        "spec.ttl",
        "longer than zero",
    ),
    ("ttl-negative", "demo-bad.yaml", demo(extra="  ttl: -2h\n"), 9, "spec.ttl", "not a duration"),
    ("ttl-unparseable", "demo-bad.yaml", demo(extra="  ttl: soon\n"), 9, "spec.ttl", "like 90m"),
    ("ttl-a-boolean", "demo-bad.yaml", demo(extra="  ttl: true\n"), 9, "spec.ttl", "a duration"),
    ("ttl-a-mapping", "demo-bad.yaml", demo(extra="  ttl: {h: 2}\n"), 9, "spec.ttl", "a duration"),
    (
        "ttl-huge",
        "demo-bad.yaml",
        demo(extra="  ttl: 99999999999d\n"),
        9,
        "spec.ttl",
        "longer than 366d",
    ),
    (
        "ttl-over-max",
        "demo-bad.yaml",
        demo(extra="  ttl: 8h1m\n"),
        9,
        "spec.ttl",
        "8h1m exceeds the maximum of 8h for profile 'small'",
    ),
    (
        "expires-without-zone",
        "demo-bad.yaml",
        demo(extra="  expiresAt: 2026-11-25T14:00:00\n"),
        9,
        "spec.expiresAt",
        "with a time zone",
    ),
    (
        "expires-a-date",
        "demo-bad.yaml",
        demo(extra="  expiresAt: 2026-11-26\n"),
        9,
        "spec.expiresAt",
        "RFC 3339",
    ),
    (
        "expires-in-the-past",
        "demo-bad.yaml",
        demo(extra="  expiresAt: 2026-11-25T11:00:00Z\n"),
        9,
        "spec.expiresAt",
        "is not after the demo's start (2026-11-25T12:00:00+00:00)",
    ),
    (
        "expires-beyond-max",
        "demo-bad.yaml",
        demo(extra="  expiresAt: 2026-11-26T12:00:00Z\n"),
        9,
        "spec.expiresAt",
        "is 1d after the demo's start; the maximum for profile 'small' is 8h",
    ),
    (
        "ttl-and-expires",
        "demo-bad.yaml",
        demo(extra="  ttl: 2h\n  expiresAt: 2026-11-25T13:00:00Z\n"),
        6,
        "spec",
        "set ttl or expiresAt, not both",
    ),
    (
        "ttl-and-expires-beside-other-errors",
        "demo-bad.yaml",
        demo(extra="  ttl: 2h\n  expiresAt: 2026-11-25T13:00:00Z\n  replicas: 2\n").replace(
            "type: enterprise", "type: bank"
        ),
        6,
        "spec",
        "set ttl or expiresAt, not both",
    ),
    (
        "owner-newline",
        "demo-bad.yaml",
        demo(extra="").replace("owner: alice@splits.network", 'owner: "alice\\nbob"'),
        8,
        "spec.owner",
        "newlines or control characters",
    ),
    (
        "owner-control-char",
        "demo-bad.yaml",
        demo().replace("owner: alice@splits.network", 'owner: "alice\\a"'),
        8,
        "spec.owner",
        "control characters",
    ),
    (
        "owner-jinja-expression",
        "demo-bad.yaml",
        demo().replace("owner: alice@splits.network", 'owner: "{{ secrets }}"'),
        8,
        "spec.owner",
        "template delimiter '{{'",
    ),
    (
        "owner-jinja-statement",
        "demo-bad.yaml",
        demo().replace("owner: alice@splits.network", 'owner: "{% raw %}"'),
        8,
        "spec.owner",
        "template delimiter '{%'",
    ),
    (
        "company-newline",
        "demo-bad.yaml",
        demo(extra='  branding:\n    companyName: "Acme\\nkind: Secret"\n'),
        10,
        "spec.branding.companyName",
        "newlines",
    ),
    (
        "company-control-char",
        "demo-bad.yaml",
        demo(extra='  branding:\n    companyName: "Acme\\u0000"\n'),
        10,
        "spec.branding.companyName",
        "control characters",
    ),
    (
        "company-jinja-expression",
        "demo-bad.yaml",
        demo(extra='  branding:\n    companyName: "Acme {{ 7*7 }}"\n'),
        10,
        "spec.branding.companyName",
        "'{{'",
    ),
    (
        "company-jinja-statement",
        "demo-bad.yaml",
        demo(extra='  branding:\n    companyName: "Acme {% if x %}"\n'),
        10,
        "spec.branding.companyName",
        "'{%'",
    ),
    (
        "logo-not-https",
        "demo-bad.yaml",
        demo(extra="  branding:\n    logoUrl: http://cdn.example.com/logo.svg\n"),
        10,
        "spec.branding.logoUrl",
        "https:// URL",
    ),
    (
        "colour-not-hex",
        "demo-bad.yaml",
        demo(extra="  branding:\n    primaryColor: blue\n"),
        10,
        "spec.branding.primaryColor",
        "#0055ff",
    ),
    (
        "label-key-with-space",
        "demo-bad.yaml",
        demo().replace("  name: demo-bad\n", "  name: demo-bad\n  labels:\n    bad key: x\n"),
        7,
        'metadata.labels["bad key"]',
        "Kubernetes label rules",
    ),
    (
        "label-key-bad-prefix",
        "demo-bad.yaml",
        demo().replace("  name: demo-bad\n", "  name: demo-bad\n  labels:\n    Ex_ample/team: x\n"),
        7,
        'metadata.labels["Ex_ample/team"]',
        "DNS-subdomain prefix",
    ),
    (
        "label-key-kubernetes-io-prefix",
        "demo-bad.yaml",
        labelled("kubernetes.io/metadata.name: ingress-nginx"),
        7,
        'metadata.labels["kubernetes.io/metadata.name"]',
        "'kubernetes.io' is reserved",
    ),
    (
        "label-key-kubernetes-io-subdomain",
        "demo-bad.yaml",
        labelled("app.kubernetes.io/managed-by: someone"),
        7,
        'metadata.labels["app.kubernetes.io/managed-by"]',
        "'app.kubernetes.io' is reserved",
    ),
    (
        "label-key-k8s-io-subdomain",
        "demo-bad.yaml",
        labelled("node.k8s.io/pool: demo"),
        7,
        'metadata.labels["node.k8s.io/pool"]',
        "'node.k8s.io' is reserved",
    ),
    (
        "label-key-democtl-prefix",
        "demo-bad.yaml",
        labelled("demos.splits.network/id: demo-other"),
        7,
        'metadata.labels["demos.splits.network/id"]',
        "'demos.splits.network' is reserved",
    ),
    (
        "label-value-too-long",
        "demo-bad.yaml",
        demo().replace(
            "  name: demo-bad\n", f"  name: demo-bad\n  labels:\n    team: {'a' * 64}\n"
        ),
        7,
        "metadata.labels.team",
        "must be at most 63 characters",
    ),
    (
        "label-value-trailing-dot",
        "demo-bad.yaml",
        demo().replace("  name: demo-bad\n", "  name: demo-bad\n  labels:\n    team: sales.\n"),
        7,
        "metadata.labels.team",
        "label value must be empty or",
    ),
    (
        "label-value-a-number",
        "demo-bad.yaml",
        demo().replace("  name: demo-bad\n", "  name: demo-bad\n  labels:\n    version: 2\n"),
        7,
        "metadata.labels.version",
        "must be a string",
    ),
    (
        "seed-size-unknown",
        "demo-bad.yaml",
        demo(extra="  seed: {size: huge}\n"),
        9,
        "spec.seed.size",
        "'small', 'medium' or 'large'",
    ),
]


@pytest.mark.parametrize(
    "name, content, line, field, fragment",
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_demo_file_is_reported_and_others_still_checked(
    repo: Path, name: str, content: str, line: int, field: str, fragment: str
) -> None:
    (repo / "demos" / name).write_text(content, encoding="utf-8")
    run = validate(repo)
    assert run.code == 1
    assert_reported(run, f"demos/{name}", line, field, fragment)
    assert_others_checked(run)


def test_id_rule_names_the_file_name_too(repo: Path) -> None:
    (repo / "demos" / "demo-Bad.yaml").write_text(demo("demo-Bad"))
    run = validate(repo)
    assert_reported(run, "demos/demo-Bad.yaml", None, "", "file name: the id must match")


def test_every_problem_of_one_file_is_reported(repo: Path) -> None:
    text = demo(
        "demo-other",
        "  profile: huge\n  ttl: 2h\n  expiresAt: 2026-11-25T13:00:00Z\n  replicas: 2\n",
    ).replace("type: enterprise", "type: bank")
    (repo / "demos" / "demo-bad.yaml").write_text(text)
    run = validate(repo)
    fields = sorted(p["field"] for p in run.problems if p["file"] == "demos/demo-bad.yaml")
    assert fields == ["metadata.name", "spec", "spec.profile", "spec.replicas", "spec.type"]


def test_file_over_64_kib(repo: Path) -> None:
    (repo / "demos" / "demo-bad.yaml").write_text(demo() + "# padding\n" * 7000)
    run = validate(repo)
    assert run.code == 1
    assert_reported(run, "demos/demo-bad.yaml", None, "", "the limit is 65536 (64 KiB)")
    assert_others_checked(run)


def test_non_utf8_bytes(repo: Path) -> None:
    (repo / "demos" / "demo-bad.yaml").write_bytes(
        demo(extra="  branding:\n    companyName: Caf").encode() + b"\xe9\n"
    )
    run = validate(repo)
    assert run.code == 1
    assert_reported(run, "demos/demo-bad.yaml", 10, "", "not valid UTF-8")
    assert_others_checked(run)


def test_second_file_with_the_same_id_is_the_one_reported(repo: Path) -> None:
    (repo / "demos" / "demo-good.yml").write_text(GOOD)
    run = validate(repo)
    assert run.code == 1
    assert_reported(run, "demos/demo-good.yml", None, "", "must end in .yaml")
    assert_reported(
        run,
        "demos/demo-good.yml",
        5,
        "metadata.name",
        "duplicate id 'demo-good': also claimed by demos/demo-good.yaml",
    )
    # the real demo-good keeps running: a stray copy must not take it down
    assert_others_checked(run)


def test_file_claiming_another_demos_id(repo: Path) -> None:
    (repo / "demos" / "demo-copy.yaml").write_text(GOOD)
    run = validate(repo)
    assert_reported(run, "demos/demo-copy.yaml", 5, "metadata.name", "must equal the file name")
    assert_reported(run, "demos/demo-copy.yaml", 5, "metadata.name", "duplicate id 'demo-good'")
    assert_others_checked(run)


def test_upper_case_suffix_is_not_silently_ignored(repo: Path) -> None:
    (repo / "demos" / "demo-bad.YAML").write_text(demo())
    run = validate(repo)
    assert_reported(run, "demos/demo-bad.YAML", None, "", "must end in .yaml")


def test_symbolic_link_is_refused(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN=do-not-print-me\n")
    (repo / "demos" / "demo-bad.yaml").symlink_to(secret)
    run = validate(repo)
    assert_reported(run, "demos/demo-bad.yaml", None, "", "symbolic links are not allowed")
    assert "do-not-print-me" not in run.stdout + run.stderr
    assert_others_checked(run)


@pytest.mark.parametrize(
    "given, reported, fragment",
    [
        pytest.param(
            "other/demo-bad.yaml",
            "other/demo-bad.yaml",
            "must live directly under demos/",
            id="outside-demos",
        ),
        pytest.param(
            "demos/nested/demo-bad.yaml",
            "demos/nested/demo-bad.yaml",
            "must live directly under demos/",
            id="nested-under-demos",
        ),
        pytest.param(
            "demos/../demo-bad.yaml",
            "demo-bad.yaml",
            "must live directly under demos/",
            id="dotdot",
        ),
        pytest.param(
            "../outside/demo-bad.yaml", "../outside/demo-bad.yaml", "'..'", id="outside-repo"
        ),
        pytest.param(
            "demos/demo-missing.yaml", "demos/demo-missing.yaml", "no such file", id="missing"
        ),
    ],
)
def test_files_named_on_the_command_line(
    repo: Path, monkeypatch: pytest.MonkeyPatch, given: str, reported: str, fragment: str
) -> None:
    for folder in ("other", "demos/nested", "."):
        (repo / folder).mkdir(parents=True, exist_ok=True)
        (repo / folder / "demo-bad.yaml").write_text(demo())
    (repo.parent / "outside").mkdir()
    (repo.parent / "outside" / "demo-bad.yaml").write_text(demo())
    monkeypatch.chdir(repo)
    run = validate(repo, given, "demos/demo-late.yaml", "demos/demo-good.yaml")
    assert run.code == 1
    assert_reported(run, reported, None, "", fragment)
    assert_others_checked(run)


# --- what stays valid -------------------------------------------------------------------


def test_realistic_punctuation_stays_valid_and_verbatim(repo: Path) -> None:
    company = 'O\'Brien & Søn: "Talent" #1'
    owner = "Zoë O'Brien-Søndergaard <zoe@splits.network>"
    text = demo(
        "demo-obrien",
        '  ttl: 90m\n  branding:\n    companyName: "O\'Brien & Søn: \\"Talent\\" #1"\n',
    ).replace("owner: alice@splits.network", f"owner: {owner}")
    (repo / "demos" / "demo-obrien.yaml").write_text(text, encoding="utf-8")
    run = validate(repo, "demos/demo-obrien.yaml", "demos/demo-good.yaml")
    assert run.code == 0, run.problems
    loaded = load_demo("demos/demo-obrien.yaml", text.encode())
    assert loaded.demo is not None
    assert loaded.demo.spec.branding is not None
    assert loaded.demo.spec.branding.companyName == company
    assert loaded.demo.spec.owner == owner


def test_valid_labels_and_expiry(repo: Path) -> None:
    text = demo(
        "demo-labels", "  profile: load-testing\n  expiresAt: 2026-11-26T11:00:00+01:00\n"
    ).replace(
        "  name: demo-labels\n",
        "  name: demo-labels\n  labels:\n    team: sales\n    splits.network/region: emea\n"
        # a look-alike of a reserved prefix is not one
        "    mykubernetes.io/tier: gold\n"
        '    empty: ""\n',
    )
    (repo / "demos" / "demo-labels.yaml").write_text(text)
    run = validate(repo, "demos/demo-labels.yaml")
    assert run.code == 0, run.problems


def test_the_projects_own_samples_are_valid() -> None:
    result = run_subprocess(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 demo file(s) checked: 3 valid, 0 problem(s)" in result.stderr


# --- exit codes, output shape, no traceback (real subprocess) ----------------------------


@pytest.mark.parametrize(
    "name, content",
    [
        pytest.param("demo-bad.yaml", b"apiVersion: [1,\n", id="not-yaml"),
        pytest.param("demo-bad.yaml", BILLION_LAUGHS.encode(), id="alias-bomb"),
        pytest.param("demo-bad.yaml", b"x: 1\n" + b"#" * 70_000, id="over-64-kib"),
        pytest.param("demo-bad.yaml", b"apiVersion: \xff\xfe\n", id="non-utf8"),
        pytest.param("demo-bad.yaml", demo(extra="  ttl: 99999999999d\n").encode(), id="huge-ttl"),
        pytest.param("demo-bad.yaml", demo(extra="  ttl: 0\n").encode(), id="ttl-zero"),
    ],
)
def test_subprocess_exit_1_without_traceback(repo: Path, name: str, content: bytes) -> None:
    (repo / "demos" / name).write_bytes(content)
    result = run_subprocess(repo, "--now", NOW_TEXT)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "unexpected error" not in result.stderr
    assert f"demos/{name}:" in result.stdout
    assert "demos/demo-late.yaml:9: spec.ttl: 9h exceeds the maximum of 8h" in result.stdout
    assert "3 demo file(s) checked: 1 valid" in result.stderr


def test_json_output_shape(repo: Path) -> None:
    (repo / "demos" / "demo-bad.yaml").write_text(demo(extra="  ttl: soon\n"))
    result = run_subprocess(repo, "--now", NOW_TEXT, "--format", "json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)
    assert problems == [
        {
            "file": "demos/demo-bad.yaml",
            "line": 9,
            "field": "spec.ttl",
            "message": "'soon' is not a duration like 90m, 2h, 1d or 1h30m",
        },
        {
            "file": "demos/demo-late.yaml",
            "line": 9,
            "field": "spec.ttl",
            "message": "9h exceeds the maximum of 8h for profile 'small'",
        },
    ]


def test_json_output_when_clean_is_an_empty_list(repo: Path) -> None:
    run = validate(repo, "demos/demo-good.yaml")
    assert (run.code, run.problems) == (0, [])


def test_text_output_format(repo: Path) -> None:
    result = run_subprocess(repo, "--now", NOW_TEXT)
    assert result.returncode == 1
    assert result.stdout == (
        "demos/demo-late.yaml:9: spec.ttl: 9h exceeds the maximum of 8h for profile 'small'\n"
    )


@pytest.mark.parametrize(
    "mutate, line, field, fragment",
    [
        pytest.param(
            lambda t: t.replace("domain: splits.network", "domain: [x"),
            None,
            "",
            "not valid YAML",
            id="not-yaml",
        ),
        pytest.param(
            lambda t: t.replace('totalCpu: "64"', "totalCpu: lots"),
            31,
            "capacity.totalCpu",
            "'lots' is not a Kubernetes quantity",
            id="bad-quantity",
        ),
        pytest.param(
            lambda t: t.replace("    maxTtl: 8h", "    maxTtl: 0"),
            22,
            "profiles.small.maxTtl",
            "not a duration",
            id="bad-duration",
        ),
        pytest.param(
            lambda t: t.replace('    cpu: "2"', "    cpu: [2]"),
            18,
            "profiles.small.cpu",
            "must be a string or a number",
            id="union-type-error-once",
        ),
        pytest.param(
            lambda t: t.replace("kind: ReconcilerSettings", "kind: Demo"),
            5,
            "kind",
            "must be 'ReconcilerSettings'",
            id="wrong-kind",
        ),
        pytest.param(
            lambda t: t + "colour: blue\n",
            63,
            "colour",
            "unknown field",
            id="unknown-field",
        ),
        pytest.param(
            lambda t: t.replace('"{id}-portal.{domain}"', '"{id}.portal.{domain}"'),
            8,
            "urls.portal",
            "is not covered by an edge certificate",
            id="hostname-two-levels-deep-under-universal-ssl",
        ),
        pytest.param(
            lambda t: t.replace("zone: splits.network", "zone: example.org"),
            8,
            "urls.portal",
            "is outside the Cloudflare zone",
            id="hostname-outside-the-zone",
        ),
        pytest.param(
            lambda t: t.replace("  small:\n", "  tiny:\n"),
            16,
            "profiles",
            "a profile named 'small' is required",
            id="no-small-profile",
        ),
        pytest.param(
            lambda t: t + "ownerId: Team_A\n",
            None,
            "ownerId",
            "must be a lowercase DNS label",
            id="owner-id-not-a-dns-label",
        ),
        pytest.param(
            lambda t: t + "ownerId: " + "x" * 24 + "\n",
            None,
            "ownerId",
            "at most 23 fit into the Supabase project name",
            id="owner-id-too-long-for-the-project-name",
        ),
    ],
)
def test_unusable_settings_exit_2_with_problems(
    repo: Path, mutate: object, line: int | None, field: str, fragment: str
) -> None:
    path = repo / "reconciler.yaml"
    path.write_text(mutate(path.read_text()))  # type: ignore[operator]
    (repo / "demos" / "demo-bad.yaml").write_text("- a list\n")
    result = run_subprocess(repo, "--format", "json")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    problems = json.loads(result.stdout)
    settings_problems = [p for p in problems if p["file"] == "reconciler.yaml"]
    assert any(
        p["field"] == field and fragment in p["message"] and (line is None or p["line"] == line)
        for p in settings_problems
    ), settings_problems
    # the demo files' own problems are still reported
    assert {
        "file": "demos/demo-bad.yaml",
        "line": 1,
        "field": "",
        "message": ("expected a mapping at the top level, found a list"),
    } in problems
    assert "settings are unusable" in result.stderr


def test_missing_settings_exit_2(tmp_path: Path) -> None:
    result = run_subprocess(tmp_path)
    assert result.returncode == 2
    assert "reconciler.yaml: not found" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--format", "xml"], id="unknown-format"),
        pytest.param(["--bogus"], id="unknown-option"),
        pytest.param(["--now", "yesterday"], id="bad-now"),
    ],
)
def test_bad_arguments_exit_2(repo: Path, args: list[str]) -> None:
    result = run_subprocess(repo, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "Error" in result.stderr


def test_capacity_is_readable() -> None:
    result = CliRunner().invoke(cli, ["capacity", "--repo", str(PROJECT)])
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0]: line.split() for line in result.stdout.splitlines() if line}
    assert lines["allocatable (70%)"][-3:] == ["44.8", "179.2Gi", "20"]
    assert lines["total"][-2:] == ["64", "256Gi"]
    assert lines["free"][-3:] == ["36.8", "163.2Gi", "17"]


def test_capacity_problem_carries_a_code(repo: Path) -> None:
    settings = repo / "reconciler.yaml"
    text = settings.read_text().replace("maxConcurrentDemos: 20", "maxConcurrentDemos: 1")
    settings.write_text(text)
    (repo / "demos" / "demo-more.yaml").write_text(demo("demo-more", "  ttl: 2h\n"))
    run = validate(repo)
    assert run.code == 1
    by_file = {str(p["file"]): p for p in run.problems}
    assert by_file["demos/demo-more.yaml"]["code"] == "capacity"
    assert str(by_file["demos/demo-more.yaml"]["message"]).startswith("would exceed")
    # other problems keep their old shape: no code key at all
    assert "code" not in by_file["demos/demo-late.yaml"]
