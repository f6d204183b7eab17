"""The deployable settings as console form text, and back: one translation for the create form,
a deployment's edit form and the template form (templates/_settings_fields.html).

The parser only splits text into the API's shapes (DeploymentCreate, DeploymentUpdate, a
template's settings); the pydantic models validate them. A line it cannot split at all is
refused here, naming the field and the line."""

from __future__ import annotations

import re
import shlex
from typing import Any

from deploymate.core.errors import ValidationFailed
from deploymate.web.forms import number, pairs

HEALTH_FIELDS = ("path", "expected_status", "retries", "interval", "timeout", "start_period")
TEXT_FIELDS = ("image", "restart_policy", "memory_limit", "cpu_limit")
PORT_FIELDS = ("internal_port", "external_port")
# The settings of the proxy era; an edit compares them parsed, so "a, b" equals "a\nb".
PROXY_FIELDS = ("domains", "tls", "volumes", "required_env", "smoke", "drain_seconds")

SMOKE_TIMEOUT = 10.0  # SmokeCheck's default: not written into the form text
_DECIMAL = re.compile(r"\d{1,9}(?:\.\d{0,6})?|\.\d{1,6}")
_SMOKE_HTTP = re.compile(
    r"(?P<method>[A-Za-z]+)\s+(?P<path>\S+)(?:\s+(?P<status>\d+)(?=\s|$))?(?:\s+(?P<text>.*\S))?"
)
_SMOKE_TIMEOUT = re.compile(r"timeout=(?P<seconds>\S+)\s+(?P<rest>.*)")
_COMMAND_PREFIX = "cmd:"
SMOKE_SYNTAX = "write GET /path [status] [text], HEAD /path [status], or cmd: program arg ..."
VOLUME_SYNTAX = (
    "write name:/path for a named volume or /host/dir:/path for a bind mount, "
    "with :ro last for read-only"
)


def _lines(values: dict[str, Any] | None) -> str:
    return "\n".join(f"{k}={v}" for k, v in (values or {}).items())


def _text_lines(text: str) -> list[tuple[int, str]]:
    """The non-blank lines with their numbers (from 1); `#` starts a comment line."""
    found = []
    for line_no, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            found.append((line_no, line))
    return found


def _quoted(line: str) -> str:
    return line if len(line) <= 80 else f"{line[:77]}..."


def _names(text: str) -> list[str]:
    """Names one per line or comma-separated; a name with a space inside is kept whole, for
    validation to refuse rather than silently read as two."""
    return [name.strip() for name in re.split(r"[,\n]", text) if name.strip()]


def _decimal(value: str) -> float | str:
    """A plain decimal becomes a number for validation; anything else is passed on to be refused."""
    value = value.strip()
    return float(value) if _DECIMAL.fullmatch(value) else value


def _volume(line_no: int, line: str) -> dict[str, Any]:
    parts = [part.strip() for part in line.split(":")]
    read_only = False
    if len(parts) == 3 and parts[2].lower() in ("ro", "rw"):
        read_only = parts.pop().lower() == "ro"
    if len(parts) != 2 or not all(parts):
        raise ValidationFailed(
            f"line {line_no} ({_quoted(line)}): {VOLUME_SYNTAX}", field="volumes"
        )
    source, path = parts
    volume: dict[str, Any] = {"source" if source.startswith("/") else "name": source, "path": path}
    if read_only:
        volume["read_only"] = True
    return volume


def _smoke(line_no: int, line: str) -> dict[str, Any]:
    def refuse(why: str) -> ValidationFailed:
        return ValidationFailed(f"line {line_no} ({_quoted(line)}): {why}", field="smoke")

    check: dict[str, Any] = {}
    rest = line
    timed = _SMOKE_TIMEOUT.fullmatch(rest)
    if timed:
        rest = timed["rest"]
        if _decimal(timed["seconds"]) != SMOKE_TIMEOUT:  # the default is not written out
            check["timeout"] = _decimal(timed["seconds"])
    if rest[: len(_COMMAND_PREFIX)].lower() == _COMMAND_PREFIX:
        try:
            argv = shlex.split(rest[len(_COMMAND_PREFIX) :])
        except ValueError as exc:  # an unclosed quote
            raise refuse(f"the command cannot be split ({str(exc).lower()})") from None
        if not argv:
            raise refuse("cmd: needs the program to run, like cmd: python -m app.check")
        return {"command": argv, **check}
    http = _SMOKE_HTTP.fullmatch(rest)
    if http is None or http["method"].upper() not in ("GET", "HEAD"):
        raise refuse(SMOKE_SYNTAX)
    expect = number(http["status"]) if http["status"] else 200
    check = {"http": http["path"], "method": http["method"].upper(), "expect": expect, **check}
    if http["text"]:
        check["contains"] = http["text"]
    return check


def _volume_text(volume: dict[str, Any]) -> str:
    source = volume.get("name") or volume.get("source") or ""
    return f"{source}:{volume.get('path', '')}{':ro' if volume.get('read_only') else ''}"


def smoke_line(check: dict[str, Any]) -> str:
    """A smoke check as its form line (the deployment page shows them so too)."""
    timeout = check.get("timeout")
    prefix = "" if timeout in (None, SMOKE_TIMEOUT) else f"timeout={timeout:g} "
    if check.get("command"):
        return f"{prefix}{_COMMAND_PREFIX} {shlex.join(check['command'])}"
    line = f"{check.get('method') or 'GET'} {check.get('http')} {check.get('expect') or 200}"
    return f"{prefix}{line}{' ' + check['contains'] if check.get('contains') else ''}"


def to_form(settings: dict[str, Any]) -> dict[str, str]:
    """Stored settings (a deployment's columns or a template's) as the form's text."""
    health = settings.get("health_check") or {}
    drain = settings.get("drain_seconds")
    form = {
        "image": str(settings.get("image") or ""),
        "internal_port": str(settings.get("internal_port") or ""),
        "external_port": str(settings.get("external_port") or ""),
        "restart_policy": str(settings.get("restart_policy") or ""),
        "env": _lines(settings.get("env")),
        "labels": _lines(settings.get("labels")),
        "command": "\n".join(settings.get("command") or []),
        "memory_limit": str(settings.get("memory_limit") or ""),
        "cpu_limit": "" if settings.get("cpu_limit") is None else f"{settings['cpu_limit']:g}",
        "health_type": str(health.get("type", "http")),
        "domains": "\n".join(settings.get("domains") or []),
        "tls": str(settings.get("tls") or ""),
        "volumes": "\n".join(_volume_text(v) for v in settings.get("volumes") or []),
        "required_env": "\n".join(settings.get("required_env") or []),
        "smoke": "\n".join(smoke_line(c) for c in settings.get("smoke") or []),
        "drain_seconds": "" if drain is None else f"{drain:g}",
    }
    for field in HEALTH_FIELDS:
        value = health.get(field)
        form[f"health_{field}"] = (
            "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        )
    return form


def _proxy_settings(form: dict[str, str], *, blank_is_unset: bool) -> dict[str, Any]:
    """Domains, TLS, volumes, required env, smoke checks and the drain period from the form."""
    data: dict[str, Any] = {
        "domains": _names(form.get("domains", "")),
        "volumes": [_volume(n, line) for n, line in _text_lines(form.get("volumes", ""))],
        "required_env": _names(form.get("required_env", "")),
        "smoke": [_smoke(n, line) for n, line in _text_lines(form.get("smoke", ""))],
    }
    if blank_is_unset:  # creating: an empty list is left for a template or the default
        data = {key: value for key, value in data.items() if value}
    tls = form.get("tls", "").strip()
    if tls:
        data["tls"] = tls
    drain = form.get("drain_seconds", "").strip()
    if drain:  # blank: the default (creating), or unchanged (editing); it cannot be unset
        data["drain_seconds"] = _decimal(drain)
    return data


def settings(form: dict[str, str], *, blank_is_unset: bool) -> dict[str, Any]:
    """The settings the form holds. With `blank_is_unset` (creating) a blank field is left out,
    for a template or the default to fill; otherwise (editing) a blank optional field clears."""
    data: dict[str, Any] = {}
    for key in TEXT_FIELDS:
        value = form.get(key, "").strip()
        if value:
            data[key] = value
        elif not blank_is_unset and key in ("memory_limit", "cpu_limit"):
            data[key] = None
    for key in PORT_FIELDS:
        if form.get(key, "").strip():
            data[key] = number(form[key])
    for key in ("env", "labels"):
        found = pairs(form.get(key, ""), key)
        if found or not blank_is_unset:
            data[key] = found
    command = [line for line in form.get("command", "").replace("\r\n", "\n").split("\n") if line]
    if command:
        data["command"] = command
    elif not blank_is_unset:
        data["command"] = None
    health = {f: form[f"health_{f}"].strip() for f in HEALTH_FIELDS if form.get(f"health_{f}", "")}
    health_type = form.get("health_type", "http") or "http"
    if health or health_type != "http" or not blank_is_unset:
        data["health_check"] = {"type": health_type, **health}
    data.update(_proxy_settings(form, blank_is_unset=blank_is_unset))
    return data


def changes(form: dict[str, str], current: dict[str, str]) -> dict[str, Any]:
    """An edit form's settings that differ from the current ones (compared as form text, the
    proxy settings as parsed values)."""
    edited = settings(form, blank_is_unset=False)
    unchanged = {
        key
        for key in ("image", "restart_policy", "env", "labels", "command", "memory_limit")
        if form.get(key, "").strip().replace("\r\n", "\n") == current.get(key, "")
    }
    if form.get("cpu_limit", "").strip() == current.get("cpu_limit", ""):
        unchanged.add("cpu_limit")
    for key in PORT_FIELDS:
        if form.get(key, "").strip() in ("", current.get(key, "")):
            unchanged.add(key)
    health_keys = ["health_type", *(f"health_{f}" for f in HEALTH_FIELDS)]
    if all(form.get(k, "").strip() == current.get(k, "") for k in health_keys):
        unchanged.add("health_check")
    before = _proxy_settings(current, blank_is_unset=False)
    unchanged.update(k for k in PROXY_FIELDS if k in edited and edited[k] == before.get(k))
    return {k: v for k, v in edited.items() if k not in unchanged}
