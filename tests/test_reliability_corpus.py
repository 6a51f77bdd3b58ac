"""Reliability: a generated corpus of malformed demo files and bad settings (hypothesis).

Each example starts from a valid demo file (or the sample reconciler.yaml) and breaks
it: a required field dropped, a field of the wrong type or value, an unknown field, a
bad name, YAML that does not parse, bytes that are not text, a document that is not a
mapping. For every example: a message naming the file (and, where there is one, the
field and line), no exception, and the valid demo next to it planned exactly as
without it. A share of the corpus also goes through `democtl validate` itself (exit
code, no traceback). Derandomized: the same corpus every run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import cli
from reconciler.plan import Observed, plan
from reconciler.validate import check_repository, load_demo, load_settings
from tests.gitrepo import BASE_TIME, PROJECT, demo_yaml, origin_and_clone

pytestmark = pytest.mark.reliability

NOW = BASE_TIME + timedelta(minutes=30)
BAD = "demos/demo-bad01.yaml"
GOOD = "demos/demo-good01.yaml"
SETTINGS_TEXT = (PROJECT / "reconciler.yaml").read_text()
SETTINGS, _ = load_settings("reconciler.yaml", SETTINGS_TEXT.encode())
assert SETTINGS is not None
CORPUS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)

_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=2),
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((*prefix, key))
            found += _paths(value, (*prefix, key))
    return found


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _drop(data: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        data = data[key]
    del data[path[-1]]


@st.composite
def broken_documents(draw: st.DrawFn, base_text: str) -> bytes:
    """A mutation of the YAML document `base_text`, as bytes."""
    kind = draw(
        st.sampled_from(["set", "drop", "unknown", "yaml", "bytes", "not-a-mapping", "name"])
    )
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=120))
    if kind == "yaml":
        return (
            draw(
                st.sampled_from(
                    [
                        b"key: [unclosed\n",
                        b"a: b: c\n",
                        b"\t- tab indented\n",
                        b"--- \n...\n--- {a: 1}\n--- {b: 2}\n",
                        b"x: &a [*a]\n",
                        b"spec: {ttl: 2h, ttl: 3h}\n",
                        b"\xff\xfe not utf-8",
                        b"",
                    ]
                )
            )
            + draw(st.text(max_size=20)).encode()
        )
    data = yaml.safe_load(base_text)
    paths = _paths(data)
    if kind == "not-a-mapping":
        return yaml.safe_dump(draw(st.one_of(st.lists(_junk, max_size=3), _junk))).encode()
    if kind == "name" and "metadata" not in data:
        kind = "set"  # settings have no name: break a field instead
    if kind == "name":
        data["metadata"]["name"] = draw(st.text(max_size=40).filter(lambda s: s != "demo-bad01"))
    elif kind == "unknown":
        parent = draw(st.sampled_from([(), *[p for p in paths if isinstance(_get(data, p), dict)]]))
        key = draw(st.text(min_size=1, max_size=12))
        target = _get(data, parent) if parent else data
        target.setdefault(key, draw(_junk))
    elif kind == "drop":
        _drop(data, draw(st.sampled_from(paths)))
    else:
        _set(data, draw(st.sampled_from(paths)), draw(_junk))
    return yaml.safe_dump(data, allow_unicode=True).encode()


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _bad_demo_text() -> str:
    return (
        demo_yaml("demo-bad01")
        + "  branding:\n    companyName: Acme\n    primaryColor: '#0055ff'\n"
    )


def _good_plan(extra: list[tuple[str, bytes]]) -> Any:
    loaded = [load_demo(GOOD, demo_yaml("demo-good01").encode())]
    loaded += [load_demo(path, data) for path, data in extra]
    assert SETTINGS is not None
    check_repository(loaded, SETTINGS, {}, NOW)
    empty = Observed(projects=(), records=(), namespaces=(), all_namespaces=())
    result = plan(SETTINGS, loaded, {}, {}, empty, NOW)
    return result.for_demo("demo-good01"), [p for item in loaded[1:] for p in item.problems]


BASELINE, _ = _good_plan([])


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\x00", f"{BAD}:1: not valid YAML: character #x0000 is not allowed"),
        (
            b"apiVersion: v1\nkind: \x07\n",
            f"{BAD}:2: not valid YAML: character #x0007 is not allowed",
        ),
    ],
)
def test_a_control_character_is_a_problem_not_a_traceback(data: bytes, expected: str) -> None:
    """Found by the corpus: PyYAML's reader raised before the parser's error handling."""
    assert [str(p) for p in load_demo(BAD, data).problems] == [expected]


seen = {"demos": 0, "settings": 0}


def _clear(problem_text: str, file: str) -> bool:
    return problem_text.startswith(f"{file}") and len(problem_text) > len(file) + 3


@CORPUS
@given(broken_documents(_bad_demo_text()))
def test_malformed_demo_files_get_a_clear_message_and_affect_no_other_demo(data: bytes) -> None:
    loaded = load_demo(BAD, data)
    if loaded.valid:
        return  # the mutation happened to keep the file valid: not part of the corpus
    seen["demos"] += 1
    good, problems = _good_plan([(BAD, data)])
    assert problems, "an invalid file has at least one problem"
    for problem in problems:
        assert _clear(str(problem), BAD), str(problem)
        assert problem.message.strip()
    assert good == BASELINE, "the valid demo's plan changed"


@CORPUS
@given(broken_documents(SETTINGS_TEXT))
def test_bad_settings_get_a_clear_message(data: bytes) -> None:
    result, problems = load_settings("reconciler.yaml", data)
    if result is not None and not problems:
        return
    seen["settings"] += 1
    assert problems
    for problem in problems:
        assert _clear(str(problem), "reconciler.yaml"), str(problem)


def test_the_corpus_is_large_enough_and_the_cli_never_shows_a_traceback(
    tmp_path: Path, figure: Any
) -> None:
    """The corpus' size, and 40 examples of it through `democtl validate` on a real repo."""
    if seen["demos"] == 0:  # run alone (-k): build the count here
        test_malformed_demo_files_get_a_clear_message_and_affect_no_other_demo()
        test_bad_settings_get_a_clear_message()
    _, repo = origin_and_clone(
        tmp_path, files={"reconciler.yaml": SETTINGS_TEXT, GOOD: demo_yaml("demo-good01")}
    )
    outcomes = {"clear": 0, "traceback": 0, "good_named": 0, "wrong_exit": 0}

    @settings(max_examples=20, derandomize=True, database=None, deadline=None)
    @given(st.booleans(), st.data())
    def through_the_cli(settings_broken: bool, draw: st.DataObject) -> None:
        base = SETTINGS_TEXT if settings_broken else _bad_demo_text()
        data = draw.draw(broken_documents(base))
        target = repo / ("reconciler.yaml" if settings_broken else BAD)
        target.write_bytes(data)
        try:
            result = CliRunner().invoke(cli, ["validate", "--repo", str(repo)])
        finally:
            (repo / "reconciler.yaml").write_text(SETTINGS_TEXT)
            (repo / BAD).unlink(missing_ok=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            outcomes["traceback"] += 1
            return
        lines = [line for line in result.output.splitlines() if ": " in line]
        expected_exit = {0} if not lines else ({2} if settings_broken else {1})
        if result.exit_code not in expected_exit | ({1, 2} if settings_broken else set()):
            outcomes["wrong_exit"] += 1
        if any("demo-good01" in line for line in lines):
            outcomes["good_named"] += 1
        outcomes["clear"] += 1

    through_the_cli()
    figure(
        "corpus",
        malformed_demo_files=seen["demos"],
        bad_settings=seen["settings"],
        through_cli=sum(outcomes.values()),
        tracebacks=outcomes["traceback"],
        other_demos_affected=outcomes["good_named"],
        wrong_exit_codes=outcomes["wrong_exit"],
    )
    assert seen["demos"] >= 100 and seen["settings"] >= 50, seen
    assert outcomes["traceback"] == 0 and outcomes["good_named"] == 0
    assert outcomes["wrong_exit"] == 0
