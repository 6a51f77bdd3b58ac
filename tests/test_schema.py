"""The committed JSON schema and the sample demos: in sync, referenced, valid by both checkers."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.validate import load_demo
from tests.conftest import PROJECT

SCHEMA_PATH = PROJECT / "schemas" / "demo.schema.json"
SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/demo.schema.json"
SAMPLES = sorted((PROJECT / "demos").glob("*.yaml"))


def as_json(value: Any) -> Any:
    """YAML timestamps become RFC 3339 strings, as an editor's schema checker sees them."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_equals_democtl_schema_byte_for_byte() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert result.stdout_bytes == SCHEMA_PATH.read_bytes(), (
        "schemas/demo.schema.json is stale: run `democtl schema > schemas/demo.schema.json`"
    )


def test_there_is_a_sample_of_each_type() -> None:
    types = {yaml.safe_load(p.read_text())["spec"]["type"] for p in SAMPLES}
    assert types == {"recruiting-agency", "enterprise", "startup"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_references_the_schema_on_its_first_line(path: Path) -> None:
    assert path.read_text().splitlines()[0] == SCHEMA_LINE


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_is_valid_by_the_json_schema_and_the_model(path: Path) -> None:
    errors = list(schema_validator().iter_errors(as_json(yaml.safe_load(path.read_bytes()))))
    assert errors == []
    loaded = load_demo(f"demos/{path.name}", path.read_bytes())
    assert loaded.problems == []
    assert loaded.demo is not None


@pytest.mark.parametrize(
    "change, keyword",
    [
        pytest.param(lambda d: d.update(extra=1), "additionalProperties", id="unknown-field"),
        pytest.param(lambda d: d["spec"].update(type="bank"), "enum", id="unknown-type"),
        pytest.param(lambda d: d["metadata"].update(name="demo_X"), "pattern", id="bad-id"),
        pytest.param(
            lambda d: d["metadata"].update(labels={"a b": "x"}),
            "additionalProperties",
            id="bad-label-key",
        ),
        pytest.param(
            lambda d: d["metadata"].update(labels={"team": "a b"}), "pattern", id="bad-label-value"
        ),
        pytest.param(lambda d: d["spec"].pop("owner"), "required", id="missing-owner"),
        pytest.param(lambda d: d["spec"].update(ttl="soon"), "anyOf", id="bad-ttl"),
        pytest.param(
            lambda d: d["spec"]["branding"].update(logoUrl="http://x.example/a.svg"),
            "anyOf",  # optional fields: the pattern sits inside anyOf
            id="logo-not-https",
        ),
    ],
)
def test_schema_refuses_what_the_model_refuses(change: Any, keyword: str) -> None:
    data = as_json(yaml.safe_load((PROJECT / "demos" / "demo-acme01.yaml").read_bytes()))
    change(data)
    errors = list(schema_validator().iter_errors(data))
    assert [e.validator for e in errors] == [keyword]
    assert load_demo("demos/demo-acme01.yaml", yaml.safe_dump(data).encode()).demo is None


def test_readme_example_is_a_valid_demo() -> None:
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("## The demo file", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = load_demo("demos/demo-acme01.yaml", example.encode())
    assert loaded.problems == []
    assert list(schema_validator().iter_errors(as_json(yaml.safe_load(example)))) == []
