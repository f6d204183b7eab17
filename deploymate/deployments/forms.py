"""The deployable settings as console form text, and back: one translation for the create form,
a deployment's edit form and the template form (templates/_settings_fields.html)."""

from __future__ import annotations

from typing import Any

from deploymate.web.forms import number, pairs

HEALTH_FIELDS = ("path", "expected_status", "retries", "interval", "timeout", "start_period")
TEXT_FIELDS = ("image", "restart_policy", "memory_limit", "cpu_limit")
PORT_FIELDS = ("internal_port", "external_port")


def _lines(values: dict[str, Any] | None) -> str:
    return "\n".join(f"{k}={v}" for k, v in (values or {}).items())


def to_form(settings: dict[str, Any]) -> dict[str, str]:
    """Stored settings (a deployment's columns or a template's) as the form's text."""
    health = settings.get("health_check") or {}
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
    }
    for field in HEALTH_FIELDS:
        value = health.get(field)
        form[f"health_{field}"] = (
            "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        )
    return form


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
    return data


def changes(form: dict[str, str], current: dict[str, str]) -> dict[str, Any]:
    """An edit form's settings that differ from the current ones (compared as form text)."""
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
    return {k: v for k, v in edited.items() if k not in unchanged}
