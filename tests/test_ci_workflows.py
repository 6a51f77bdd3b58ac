"""The GitHub Actions workflows shipped for state repositories are valid workflows."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent
SCHEMA = PROJECT / "tests" / "contracts" / "schemas" / "github-workflow.json"


@pytest.mark.parametrize("workflow", sorted((PROJECT / "ci").glob("*.yml")), ids=lambda p: p.name)
def test_workflow_matches_github_schema(workflow: Path) -> None:
    document = yaml.safe_load(workflow.read_text())
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as the string "on".
    if True in document:
        document["on"] = document.pop(True)
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(document)
    commands = " ".join(
        step.get("run", "") for job in document["jobs"].values() for step in job["steps"]
    )
    assert "democtl" in commands
