"""Reading `deploymate.yaml`: every problem with its file, line and column, in words.

    deploymate.yaml:14:7: services.web.port: expected an integer 1-65535, got "80a"

The text is parsed with ruamel.yaml (positions of every key and value), checked against the
published JSON Schema (schema.py), then against the rules a schema cannot say (guards).
Limits keep hostile input cheap: 1 MiB of text, anchors that expand to at most MAX_NODES values.
"""

from __future__ import annotations

import difflib
import io
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from deploymate.apps.schema import APP_SPEC

MAX_BYTES = 1_048_576
MAX_NODES = 10_000  # values after anchors and aliases are expanded
MAX_DEPTH = 32
KINDS = ("preview", "staging", "production")

_VALIDATOR = Draft202012Validator(APP_SPEC)


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based; 0 when the whole file is meant
    column: int
    path: str  # dotted, e.g. services.web.port ("" for the file)
    message: str

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}:{self.column}" if self.line else filename
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


class SpecInvalid(ValueError):
    """The spec is refused; `problems` are in file order."""

    def __init__(self, problems: list[Problem], filename: str = "deploymate.yaml") -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.path))
        self.filename = filename
        super().__init__("\n".join(p.render(filename) for p in self.problems))


@dataclass(frozen=True)
class AppSpec:
    """A valid spec as plain data, and the text it came from."""

    data: dict[str, Any]
    text: str

    @property
    def name(self) -> str:
        return str(self.data["app"])

    def kind_of(self, environment: str) -> str:
        return environment_kind(environment, self.data["environments"][environment])


def environment_kind(name: str, env: dict[str, Any]) -> str:
    """Declared, or read from the name's start (staging-eu is a staging environment)."""
    if env.get("kind"):
        return str(env["kind"])
    return next((k for k in KINDS if name == k or name.startswith(f"{k}-")), "")


# --- parsing ---------------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="rt")  # round trip: keeps the line and column of every node
    yaml.allow_duplicate_keys = False
    return yaml


def _parse(text: str) -> Any:
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise SpecInvalid([Problem(0, 0, "", f"the file is larger than {MAX_BYTES} bytes")])
    try:
        return _yaml().load(io.StringIO(text))
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = (exc.problem or "").split('"')[1] if '"' in (exc.problem or "") else "a key"
        raise SpecInvalid(
            [Problem(mark.line + 1, mark.column + 1, "", f"duplicate key {key}: give it once")]
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = str(exc.problem or exc.context or "not valid YAML")
        if "\\t" in problem or "tab" in problem:
            problem = "a tab character; YAML indents with spaces only"
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise SpecInvalid([Problem(line, col, "", f"not valid YAML: {problem}")]) from None
    except YAMLError as exc:
        raise SpecInvalid([Problem(0, 0, "", f"not valid YAML: {exc}")]) from None


def _plain(node: Any, budget: list[int], depth: int = 0) -> Any:
    """The parsed tree as plain data, counting every value (an alias counts each time it is
    used, so a 'billion laughs' of anchors is refused, not expanded)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecInvalid(
            [Problem(0, 0, "", f"anchors and aliases expand to more than {MAX_NODES} values")]
        )
    if depth > MAX_DEPTH:
        raise SpecInvalid([Problem(0, 0, "", f"nested deeper than {MAX_DEPTH} levels")])
    if isinstance(node, dict):
        return {str(k): _plain(v, budget, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, budget, depth + 1) for v in node]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    return str(node)  # dates and other YAML scalars: as the text they are


# --- positions -------------------------------------------------------------------------------


def _position(tree: Any, path: list[Any], *, key: bool = False) -> tuple[int, int]:
    """1-based line and column of the value at `path` (of its key, with `key`); the nearest
    ancestor that has one when the path goes further than the tree."""
    node, found = tree, (1, 1)
    for index, part in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.key(part) if (key and last) else node.lc.value(part)
            found = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = node.lc.item(part)
            found = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return found


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- schema messages -------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value[:80])
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


_TYPES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def _expected(error: SchemaError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    words = schema.get("x-expected")
    if words:
        return str(words)
    kind = schema.get("type")
    text = _TYPES.get(str(kind), str(kind)) if kind else "another value"
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        text += f" from {low:g} to {high:g}"
    return text


def _unknown_key(error: SchemaError, tree: Any) -> list[Problem]:
    known = sorted((error.schema or {}).get("properties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    problems = []
    for key in sorted(k for k in instance if k not in known):
        path = [*error.absolute_path, key]
        line, col = _position(tree, path, key=True)
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(known)}"
        problems.append(Problem(line, col, _dotted(path), f"unknown key{hint}"))
    return problems


def _problems_of(error: SchemaError, tree: Any) -> list[Problem]:
    path = list(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
        name_path = [*path, error.instance]  # a bad name: point at the name itself
        line, col = _position(tree, name_path, key=True)
        return [
            Problem(line, col, _dotted(name_path), f"not a valid name; expected {_expected(error)}")
        ]
    line, col = _position(tree, path)
    where = _dotted(path)
    validator = error.validator
    if validator == "additionalProperties":
        return _unknown_key(error, tree)
    if validator == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else "a key"
        return [Problem(line, col, where, f"missing {missing}")]
    if validator == "oneOf":
        return [Problem(line, col, where, f"expected {_expected(error)}")]
    if validator == "propertyNames":
        return [
            Problem(
                *_position(tree, [*path, error.instance], key=True),
                _dotted([*path, error.instance]),
                f"not a valid name; expected {_expected(error)}",
            )
        ]
    if validator in ("minItems", "minProperties"):
        return [Problem(line, col, where, f"expected at least {error.validator_value}")]
    if validator in ("maxItems", "maxProperties", "maxLength"):
        return [Problem(line, col, where, f"expected at most {error.validator_value}")]
    if validator == "uniqueItems":
        return [Problem(line, col, where, "an item appears twice")]
    if validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return [
            Problem(line, col, where, f"expected one of {choices}, got {_shown(error.instance)}")
        ]
    return [Problem(line, col, where, f"expected {_expected(error)}, got {_shown(error.instance)}")]


def _schema_problems(data: dict[str, Any], tree: Any) -> list[Problem]:
    problems = [p for error in _VALIDATOR.iter_errors(data) for p in _problems_of(error, tree)]
    seen, unique = set(), []
    for p in problems:
        if (p.line, p.column, p.path, p.message) not in seen:
            seen.add((p.line, p.column, p.path, p.message))
            unique.append(p)
    return unique


# --- rules beyond the schema -----------------------------------------------------------------


def inside(path: str) -> bool:
    """A relative path that stays inside the repository once normalised."""
    normal = posixpath.normpath(path)
    return not path.startswith("/") and normal != ".." and not normal.startswith("../")


def _build_guards(
    at: Callable[..., None], svc_name: str, build: dict[str, Any] | None, secrets: set[str]
) -> None:
    if not build:
        return
    where = ["services", svc_name, "build"]
    for key in ("context", "dockerfile"):
        if key in build and not inside(str(build[key])):
            at(
                [*where, key],
                "must stay inside the repository: a relative path without ../ above its root",
            )
    for name in sorted(set(build.get("args") or {}) & secrets):
        at(
            [*where, "args", name],
            f"{name} is a secret: build args stay in the image's history; list it under "
            "build.secrets (a BuildKit secret) instead",
            key=True,
        )
    for index, name in enumerate(build.get("secrets") or []):
        if name not in secrets:
            at([*where, "secrets", index], f"{name} is not listed under the app's secrets:")


def _guards(data: dict[str, Any], tree: Any, servers: set[str] | None) -> list[Problem]:
    problems: list[Problem] = []

    def at(path: list[Any], message: str, key: bool = False) -> None:
        line, col = _position(tree, path, key=key)
        problems.append(Problem(line, col, _dotted(path), message))

    secrets = set(data.get("secrets") or [])
    services: dict[str, Any] = data["services"]
    environments: dict[str, Any] = data["environments"]
    for name in sorted(secrets & set(data.get("env") or {})):
        at(
            ["env", name],
            f"{name} is a secret; its value lives in DeployMate, not in the file",
            key=True,
        )
    for svc_name, svc in services.items():
        _build_guards(at, svc_name, svc.get("build"), secrets)
        for name in sorted(secrets & set(svc.get("env") or {})):
            at(
                ["services", svc_name, "env", name],
                f"{name} is a secret; its value lives in DeployMate, not in the file",
                key=True,
            )
    for env_name, env in environments.items():
        for name in sorted(secrets & set(env.get("env") or {})):
            at(
                ["environments", env_name, "env", name],
                f"{name} is a secret; its value lives in DeployMate, not in the file",
                key=True,
            )
        if not environment_kind(env_name, env):
            at(
                ["environments", env_name],
                "say which kind of environment this is: kind: preview, staging or production",
                key=True,
            )
        for svc_name in sorted(set(env.get("domains") or {}) - set(services)):
            at(
                ["environments", env_name, "domains", svc_name],
                f"no service named {svc_name}" + _close(svc_name, services),
                key=True,
            )
        for svc_name, count in sorted((env.get("replicas") or {}).items()):
            if svc_name not in services:
                at(
                    ["environments", env_name, "replicas", svc_name],
                    f"no service named {svc_name}" + _close(svc_name, services),
                    key=True,
                )
            elif isinstance(count, int) and count > 1:
                at(
                    ["environments", env_name, "replicas", svc_name],
                    "one container per service per server for now: list more servers under "
                    "servers: to run more copies",
                )
        if servers is not None:
            for index, server in enumerate(env.get("servers") or []):
                if server not in servers:
                    at(
                        ["environments", env_name, "servers", index],
                        f"no server named {server}"
                        + _close(server, servers)
                        + " (see `deploymate servers list`)",
                    )
    provided = set(data.get("env") or {}) | secrets
    for index, name in enumerate(data.get("required_env") or []):
        missing = [
            env_name
            for env_name, env in environments.items()
            if name not in provided
            and name not in (env.get("env") or {})
            and not all(name in (svc.get("env") or {}) for svc in services.values())
        ]
        if missing:
            at(
                ["required_env", index],
                f"{name} is required but {', '.join(sorted(missing))} "
                f"{'does' if len(missing) == 1 else 'do'} not provide it; add it to env, to "
                "secrets, or to the environment's env",
            )
    scopes: list[tuple[str | None, dict[str, Any]]] = [(None, {}), *environments.items()]
    for scope_name, scope in scopes:
        owners: dict[str, str] = {}
        for svc_name, svc in services.items():
            overrides = scope.get("domains") or {}
            if scope_name is not None and not overrides:
                break  # the same domains as the services': checked once, above
            domains = overrides.get(svc_name, svc.get("domains") or [])
            health = svc.get("health") or {}
            if domains and health.get("type", "http") != "http":
                path = (
                    ["environments", scope_name, "domains", svc_name]
                    if svc_name in overrides
                    else ["services", svc_name, "domains"]
                )
                at(
                    path,
                    f"{svc_name} has domains but a {health.get('type')} health check; "
                    "a service behind a domain needs an HTTP health check",
                )
            for domain in domains:
                if domain in owners and owners[domain] != svc_name:
                    path = (
                        ["environments", scope_name, "domains", svc_name]
                        if svc_name in overrides
                        else ["services", svc_name, "domains"]
                    )
                    where = f" in {scope_name}" if scope_name else ""
                    at(
                        path,
                        f"{domain} is also a domain of {owners[domain]}{where}; "
                        "a host name routes to one service",
                    )
                owners.setdefault(domain, svc_name)
            if domains and "port" not in svc:
                at(["services", svc_name], f"{svc_name} has domains, so it needs a port", key=True)
    for key in ("drift", "migrations"):
        service = (data.get(key) or {}).get("service")
        if service and service not in services:
            at([key, "service"], f"no service named {service}" + _close(service, services))
    return problems


def _close(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# --- the entry point -------------------------------------------------------------------------


def load(
    text: str, *, filename: str = "deploymate.yaml", servers: set[str] | None = None
) -> AppSpec:
    """A valid spec, or SpecInvalid naming every problem found. `servers`: the names the
    environments may use (None: not checked, e.g. `app validate` without an instance)."""
    try:
        tree = _parse(text)
        if not isinstance(tree, dict):
            what = "empty" if tree is None else f"{_shown(tree)}"
            raise SpecInvalid(
                [Problem(1, 1, "", f"expected a mapping (app:, services:, ...), got {what}")]
            )
        data = _plain(tree, [MAX_NODES])
    except SpecInvalid as exc:
        raise SpecInvalid(exc.problems, filename) from None
    problems = _schema_problems(data, tree)
    if not problems:
        problems = list(dict.fromkeys(_guards(data, tree, servers)))
    if problems:
        raise SpecInvalid(problems, filename)
    return AppSpec(data, text)
