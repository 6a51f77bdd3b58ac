"""A small stand-in for the GitHub Actions runner: enough to run democtl's workflows locally.

It runs one job's steps in order, as the runner does: `run:` steps under
`bash --noprofile --norc -eo pipefail {0}` (what `shell: bash` means), with the
environment Actions sets (GITHUB_STEP_SUMMARY, GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH,
GITHUB_EVENT_PATH, ...), `${{ ... }}` expressions evaluated over the contexts the
test gives, `if:` conditions with success()/failure()/cancelled()/always(), and the
democtl composite action expanded from action.yml with its inputs. Other actions
(checkout, setup-python) are skipped: the test's workspace is already a checkout and
the test's Python is the one set up. An expression this evaluator does not know is
an error, never silently empty.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTION = "splits-network/democtl@"
SKIPPED_ACTIONS = ("actions/checkout@", "actions/setup-python@")
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))"
    r"|(?P<num>\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*(?:\(\))?))"
)
STATUS_FUNCTIONS = ("success()", "failure()", "cancelled()", "always()")


def load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as the string "on".
    if True in document:
        document["on"] = document.pop(True)
    return dict(document)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Contexts:
    """github, vars, secrets, inputs, runner, env, and the job's status so far."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)
        self.failed = False

    def lookup(self, path: str) -> Any:
        if path in STATUS_FUNCTIONS:
            return {
                "success()": not self.failed,
                "failure()": self.failed,
                "cancelled()": False,
                "always()": True,
            }[path]
        head, *rest = path.split(".")
        if head not in self.values:
            raise KeyError(f"unknown context in expression: {path}")
        value: Any = self.values[head]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def evaluate(self, expression: str) -> Any:
        # GitHub's operators over Python's: tokens are translated, names looked up here.
        out: list[str] = []
        names: dict[str, Any] = {}
        position = 0
        expression = expression.strip()
        while position < len(expression):
            match = _TOKEN.match(expression, position)
            if match is None or match.end() == position:
                raise ValueError(f"cannot read expression {expression!r} at {position}")
            position = match.end()
            if match["str"]:
                out.append(repr(match["str"][1:-1].replace("''", "'")))
            elif match["op"]:
                out.append(
                    {"&&": " and ", "||": " or ", "!": " not "}.get(match["op"], match["op"])
                )
            elif match["num"]:
                out.append(match["num"])
            elif match["name"] in {"true", "false", "null"}:
                out.append({"true": "True", "false": "False", "null": "None"}[match["name"]])
            else:
                key = f"_v{len(names)}"
                value = self.lookup(match["name"])
                # GitHub compares loosely: a missing value is null, compared as ''.
                names[key] = "" if value is None else value
                out.append(key)
        # only tokens translated above reach eval, with no builtins: a test-only evaluator
        return eval("".join(out), {"__builtins__": {}}, names)

    def substitute(self, text: str) -> str:
        return _EXPR.sub(lambda m: _text(self.evaluate(m.group(1))), text)

    def condition(self, step: Mapping[str, Any]) -> bool:
        raw = step.get("if")
        if raw is None:
            return not self.failed  # the implicit success()
        expression = _EXPR.sub(lambda m: m.group(1), str(raw))
        if not any(f in expression for f in STATUS_FUNCTIONS):
            expression = f"success() && ({expression})"
        return bool(self.evaluate(expression))


@dataclass
class StepResult:
    name: str
    status: str  # "success" | "failure" | "skipped"
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""


@dataclass
class Runner:
    """Runs a workflow's one job in `workspace` with the Actions environment."""

    project: Path  # where action.yml lives (GITHUB_ACTION_PATH)
    workspace: Path
    runner_temp: Path
    env: dict[str, str]
    contexts: dict[str, Any]
    results: list[StepResult] = field(default_factory=list)
    timeout: float = 180.0  # seconds one step may take (a real install takes minutes)

    def run(self, workflow: Path, *, stop_after: str | None = None) -> list[StepResult]:
        """Run the job's steps (up to and including `stop_after`, to keep a test short)."""
        document = load_yaml(workflow)
        (job,) = document["jobs"].values()
        ctx = Contexts({**self.contexts, "env": {}})
        self.results = []
        for index, step in enumerate(job["steps"]):
            name = step.get("name") or step.get("uses") or f"step {index}"
            if not ctx.condition(step):
                self.results.append(StepResult(name, "skipped"))
                continue
            uses = str(step.get("uses", ""))
            if uses.startswith(SKIPPED_ACTIONS):
                self.results.append(StepResult(name, "skipped"))
                continue
            env = {k: ctx.substitute(_text(v)) for k, v in (step.get("env") or {}).items()}
            if uses.startswith(ACTION):
                inputs = {k: ctx.substitute(_text(v)) for k, v in (step.get("with") or {}).items()}
                result = self._run_action(name, inputs, env)
            elif "run" in step:
                assert step.get("shell") == "bash", f"{name}: a run step without shell: bash"
                script = ctx.substitute(step["run"])
                result = self._run_script(name, script, env, self.workspace)
            else:
                raise AssertionError(f"{name}: the runner does not know {uses!r}")
            self.results.append(result)
            if result.status == "failure":
                ctx.failed = True
            if name == stop_after:
                break
        return self.results

    def step(self, name: str) -> StepResult:
        return next(r for r in self.results if r.name == name)

    def _run_action(self, name: str, given: dict[str, str], env: dict[str, str]) -> StepResult:
        action = load_yaml(self.project / "action.yml")
        declared = action["inputs"]
        unknown = set(given) - set(declared)
        assert not unknown, f"{name}: inputs {unknown} are not declared in action.yml"
        inputs = {
            key: given.get(key, _text(spec.get("default", ""))) for key, spec in declared.items()
        }
        ctx = Contexts({**self.contexts, "inputs": {}, "env": {}})  # defaults may use github.token
        inputs = {k: ctx.substitute(v) for k, v in inputs.items()}
        ctx = Contexts({**self.contexts, "inputs": inputs, "env": {}})
        stdout, stderr = [], []
        for step in action["runs"]["steps"]:
            uses = str(step.get("uses", ""))
            if uses.startswith(SKIPPED_ACTIONS):
                continue
            assert step.get("shell") == "bash", f"action step {step.get('name')}: shell: bash"
            step_env = {
                **env,
                **{k: ctx.substitute(_text(v)) for k, v in (step.get("env") or {}).items()},
            }
            cwd = self.workspace / ctx.substitute(_text(step.get("working-directory", ".")))
            result = self._run_script(
                name, ctx.substitute(step["run"]), step_env, cwd, action_path=self.project
            )
            stdout.append(result.stdout)
            stderr.append(result.stderr)
            if result.status == "failure":
                return StepResult(
                    name, "failure", result.returncode, "".join(stdout), "".join(stderr)
                )
        return StepResult(name, "success", 0, "".join(stdout), "".join(stderr))

    def _run_script(
        self,
        name: str,
        script: str,
        env: dict[str, str],
        cwd: Path,
        action_path: Path | None = None,
    ) -> StepResult:
        path = self.runner_temp / f"step-{len(self.results)}.sh"
        path.write_text(script)
        github_env = self.runner_temp / "github_env"
        github_path = self.runner_temp / "github_path"
        github_env.touch()
        github_path.touch()
        full = {**self.env, **_read_env_file(github_env), **env}
        extra_path = [p for p in github_path.read_text().splitlines() if p]
        full["PATH"] = ":".join([*reversed(extra_path), full["PATH"]])
        full["GITHUB_ENV"] = str(github_env)
        full["GITHUB_PATH"] = str(github_path)
        if action_path is not None:
            full["GITHUB_ACTION_PATH"] = str(action_path)
        process = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
            cwd=cwd,
            env=full,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        status = "success" if process.returncode == 0 else "failure"
        return StepResult(name, status, process.returncode, process.stdout, process.stderr)


def _read_env_file(path: Path) -> dict[str, str]:
    # KEY=value lines (the heredoc form is not used by these workflows)
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out
