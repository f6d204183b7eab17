"""The restore dry-run: a bundle checked against this instance, section by section.

Pure logic: no I/O, no database. It runs in a worker thread, so it never sorts a whole set in
one call (the names it lists are the first few found with heapq), and the numbers it reads
must be finite (`1e999` is refused as not JSON).
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from deploymate.backup.format import (
    CHECKSUM,
    FIELDS,
    FORMAT,
    MANIFEST_FIELDS,
    OPTIONAL,
    READABLE_VERSIONS,
    REQUIRED,
    SECTIONS,
    SETTINGS_KEYS,
    SINCE,
    checksum,
    section_count,
)
from deploymate.core.crypto import FERNET_PREFIX

Severity = Literal["info", "warn", "error"]
Status = Literal["ok", "warn", "error"]
_LISTED = 10  # names listed in one reason before "and N more"


@dataclass(frozen=True)
class Reason:
    code: str
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


@dataclass
class SectionReport:
    section: str
    records: int | None = None
    reasons: list[Reason] = field(default_factory=list)

    @property
    def status(self) -> Status:
        severities = {r.severity for r in self.reasons}
        if "error" in severities:
            return "error"
        return "warn" if "warn" in severities else "ok"

    def add(self, code: str, severity: Severity, message: str) -> None:
        self.reasons.append(Reason(code, severity, message))

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "status": self.status,
            "records": self.records,
            "reasons": [r.to_dict() for r in self.reasons],
        }


# Whole-bundle failures that leave nothing to analyse, and their HTTP status.
FATAL_STATUS = {
    "bundle_too_large": 413,
    "bundle_not_json": 422,
    "bundle_truncated": 422,
    "bundle_not_object": 422,
}


@dataclass
class DryRunReport:
    sections: list[SectionReport]
    manifest: dict[str, Any] | None = None
    fatal: Reason | None = None  # set when the bundle could not be read at all
    size: int = 0

    @property
    def readable(self) -> bool:
        return self.fatal is None

    @property
    def status(self) -> Status:
        statuses = {s.status for s in self.sections}
        if "error" in statuses:
            return "error"
        return "warn" if "warn" in statuses else "ok"

    @property
    def http_status(self) -> int:
        return 200 if self.fatal is None else FATAL_STATUS.get(self.fatal.code, 422)

    def count(self, status: Status) -> int:
        return sum(1 for s in self.sections if s.status == status)

    @property
    def summary(self) -> str:
        if self.fatal is not None:
            return f"The bundle cannot be read: {self.fatal.message}. Nothing was changed."
        errors, warns = self.count("error"), self.count("warn")
        verdict = (
            "a restore would be refused until the errors are fixed"
            if errors
            else "a restore could proceed" + (" (read the warnings first)" if warns else "")
        )
        return (
            f"{len(self.sections)} sections: {self.count('ok')} ok, {warns} warn, "
            f"{errors} error; {verdict}. Dry-run: nothing was changed."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "readable": self.readable,
            "summary": self.summary,
            "size": self.size,
            "manifest": self.manifest,
            "sections": [s.to_dict() for s in self.sections],
        }


@dataclass(frozen=True)
class CurrentState:
    """What this instance holds, for clash and reference checks."""

    usernames: frozenset[str] = frozenset()
    servers: Mapping[int, str] = field(default_factory=dict)  # id -> name
    # Live deployments as (name, server name or None for the control host).
    deployments: frozenset[tuple[str, str | None]] = frozenset()
    settings: Mapping[str, Any] = field(default_factory=dict)
    apps: frozenset[str] = frozenset()
    webhooks: frozenset[str] = frozenset()
    key_fingerprints: tuple[str, ...] = ()


# --- the analysis --------------------------------------------------------------------------


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(values: Iterable[Any]) -> str:
    items = {_short(v) for v in values}
    shown = ", ".join(heapq.nsmallest(_LISTED, items))
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _fatal(code: str, message: str, size: int) -> DryRunReport:
    row = SectionReport("bundle")
    row.add(code, "error", message)
    return DryRunReport(sections=[row], fatal=Reason(code, "error", message), size=size)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def _parse(data: bytes) -> tuple[Any, Reason | None]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, Reason(
            "bundle_not_json", "error", f"the bundle is not UTF-8 text (byte {exc.start})"
        )
    if not text.strip():
        return None, Reason("bundle_not_json", "error", "the bundle is empty")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite), None
    except json.JSONDecodeError as exc:
        tail = text[exc.pos :].strip()
        cut = text.lstrip().startswith(("{", "[")) and (
            not tail
            or exc.msg.startswith("Unterminated string")
            or (len(tail) < 5 and any(w.startswith(tail) for w in ("true", "false", "null")))
        )
        if cut:
            return None, Reason(
                "bundle_truncated",
                "error",
                f"the bundle is truncated: it ends at byte {len(data)} in the middle of the JSON",
            )
        return None, Reason(
            "bundle_not_json",
            "error",
            f"the bundle is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        )
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        return None, Reason("bundle_not_json", "error", f"the bundle is not valid JSON: {detail}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def analyse(
    bundle_bytes: bytes,
    *,
    current: CurrentState,
    can_decrypt: Callable[[str], bool],
    max_bytes: int,
) -> DryRunReport:
    """Check a bundle against this instance; reports per section, changes nothing."""
    size = len(bundle_bytes)
    if size > max_bytes:
        return _fatal(
            "bundle_too_large",
            f"the bundle is {size} bytes; the limit is {max_bytes} bytes",
            size,
        )
    doc, problem = _parse(bundle_bytes)
    if problem is not None:
        return _fatal(problem.code, problem.message, size)
    if not isinstance(doc, dict):
        return _fatal(
            "bundle_not_object",
            f"the bundle is a JSON {type(doc).__name__}, not an object with a manifest",
            size,
        )
    manifest, sections = doc.get("manifest"), doc.get("sections")
    if not isinstance(manifest, dict) or not isinstance(sections, dict):
        missing = [
            k
            for k, v in (("manifest", manifest), ("sections", sections))
            if not isinstance(v, dict)
        ]
        return _fatal(
            "bundle_not_object",
            f"the bundle has no {' and no '.join(missing)} object; is it a DeployMate backup?",
            size,
        )
    return _Analysis(manifest, sections, current, can_decrypt).run(doc, size)


class _Analysis:
    def __init__(
        self,
        manifest: dict[str, Any],
        sections: dict[str, Any],
        current: CurrentState,
        can_decrypt: Callable[[str], bool],
    ) -> None:
        self.manifest = manifest
        self.sections = sections
        self.current = current
        self._can_decrypt = can_decrypt
        self._decryptable: dict[str, bool] = {}
        self.head = SectionReport("bundle")
        self.rows: dict[str, SectionReport] = {}
        # Filled while the record sections are checked, used by the references checks: every
        # record with an id counts as present, even one reported for another problem.
        self.bundle_servers: dict[int, str] = {}
        self.bundle_deployments: set[int] = set()
        self.bundle_apps: set[int] = set()

    def _manifest_info(self) -> dict[str, Any]:
        """The manifest as shown back: scalars only, long text cut, counts of known sections."""
        info: dict[str, Any] = {}
        for key in ("format", "format_version", "app_version", "created_at", "key_fingerprint"):
            value = self.manifest.get(key)
            info[key] = (
                value
                if value is None or isinstance(value, bool | int | float)
                else _short(value if isinstance(value, str) else type(value).__name__)
            )
        counts = self.manifest.get("counts")
        info["counts"] = (
            {k: v for k, v in counts.items() if k in SECTIONS and _is_int(v)}
            if isinstance(counts, dict)
            else None
        )
        info["sensitive"] = self.manifest.get("sensitive") is True
        return info

    def run(self, doc: dict[str, Any], size: int) -> DryRunReport:
        info = self._manifest_info()
        report = DryRunReport(sections=[self.head], manifest=info, size=size)
        if not self._check_format():
            return report
        self._check_bundle_fields(doc)
        self._check_checksum()
        if self.manifest.get("sensitive") is True:
            self.head.add(
                "sensitive",
                "info",
                "the bundle carries password hashes (made with --include-password-hashes): "
                "keep it as private as the database",
            )
        counts = self.manifest.get("counts")
        if not isinstance(counts, dict):
            self.head.add(
                "counts_mismatch", "error", "the manifest has no counts object per section"
            )
            counts = None
        for name in SECTIONS:
            row = self.rows[name] = SectionReport(name)
            report.sections.append(row)
            value = self.sections.get(name)
            if value is None and SINCE.get(name, 1) > self.manifest["format_version"]:
                row.add(
                    "not_in_version",
                    "info",
                    f"format version {self.manifest['format_version']} has no {name} (added in "
                    f"version {SINCE[name]}): nothing of it would be restored",
                )
                continue
            if value is None:
                row.add("missing_section", "error", f"the bundle has no {name} section")
                continue
            row.records = section_count(value)
            if counts is not None and counts.get(name) != row.records:
                row.add(
                    "counts_mismatch",
                    "error",
                    f"the manifest counts {counts.get(name)!r} {name}; "
                    f"the section holds {row.records}",
                )
            if name == "settings":
                self._settings(row, value)
            else:
                self._records(name, row, value)
        for name in sorted(set(self.sections) - set(SECTIONS)):
            row = SectionReport(_short(name), records=section_count(self.sections[name]))
            row.add(
                "unknown_section",
                "warn",
                f"section {_short(name)} is not part of format version "
                f"{self.manifest['format_version']}; "
                "a restore would ignore it",
            )
            report.sections.append(row)
        return report

    # -- whole bundle

    def _check_format(self) -> bool:
        fmt, version = self.manifest.get("format"), self.manifest.get("format_version")
        if fmt != FORMAT:
            self.head.add(
                "unknown_format",
                "error",
                f"format {fmt!r} is not {FORMAT!r}; this is not a DeployMate backup bundle",
            )
            return False
        if not _is_int(version) or version not in READABLE_VERSIONS:
            self.head.add(
                "unknown_format_version",
                "error",
                f"format_version {version!r} is unknown; this instance reads version "
                f"{_versions()} (a bundle from a newer DeployMate "
                "needs that version)",
            )
            return False
        return True

    def _check_bundle_fields(self, doc: dict[str, Any]) -> None:
        extra = [f"manifest.{k}" for k in self.manifest if k not in MANIFEST_FIELDS]
        extra += [k for k in doc if k not in ("manifest", "sections")]
        if extra:
            self.head.add("unknown_fields", "warn", f"unknown fields, ignored: {_names(extra)}")
        missing = [k for k in ("app_version", "created_at") if k not in self.manifest]
        if missing:
            self.head.add("missing_fields", "error", f"the manifest lacks {_names(missing)}")

    def _check_checksum(self) -> None:
        stated = self.manifest.get("checksum")
        if not isinstance(stated, str) or not CHECKSUM.fullmatch(stated):
            self.head.add(
                "checksum_mismatch",
                "error",
                "the manifest has no valid checksum (expected sha256:<64 hex digits>)",
            )
            return
        try:
            actual = checksum(self.sections)
        except (ValueError, RecursionError):
            actual = "unreadable"
        if actual != stated:
            self.head.add(
                "checksum_mismatch",
                "error",
                "checksum mismatch: the sections were changed or damaged after the bundle was made",
            )

    # -- settings

    def _settings(self, row: SectionReport, value: Any) -> None:
        if not isinstance(value, dict):
            row.add("malformed", "error", "the settings section is not an object")
            return
        unknown = [k for k in value if k not in SETTINGS_KEYS]
        if unknown:
            row.add("unknown_fields", "warn", f"unknown settings, ignored: {_names(unknown)}")
        differs = [
            f"{k} ({value[k]!r} in the bundle, {self.current.settings[k]!r} here)"
            for k in SETTINGS_KEYS
            if k in value and k in self.current.settings and value[k] != self.current.settings[k]
        ]
        if differs:
            row.add(
                "settings_differ",
                "info",
                "differs from this instance (set it in DEPLOYMATE_* to match): "
                + "; ".join(differs[:_LISTED]),
            )

    # -- record sections

    def _records(self, name: str, row: SectionReport, value: Any) -> None:
        if not isinstance(value, list):
            row.add("malformed", "error", f"the {name} section is not a list of records")
            return
        known, required = (*FIELDS[name], *OPTIONAL.get(name, ())), REQUIRED[name]
        present = {
            r["id"]: _short(r.get("name", f"#{r['id']}"))
            for r in value
            if isinstance(r, dict) and _is_int(r.get("id"))
        }
        if name == "servers":
            self.bundle_servers = present
        elif name == "deployments":
            self.bundle_deployments = set(present)
        elif name == "apps":
            self.bundle_apps = set(present)
        records: list[dict[str, Any]] = []
        not_objects: list[int] = []
        missing: set[str] = set()
        unknown: set[str] = set()
        for index, record in enumerate(value):
            if not isinstance(record, dict):
                not_objects.append(index)
                continue
            gaps = [f for f in required if f not in record]
            missing.update(gaps)
            unknown.update(k for k in record if k not in known)
            if not gaps:
                records.append(record)
        if not_objects:
            row.add(
                "malformed",
                "error",
                f"records at positions {_names(not_objects)} are not objects",
            )
        if missing:
            row.add("missing_fields", "error", f"records lack required fields: {_names(missing)}")
        if unknown:
            row.add("unknown_fields", "warn", f"unknown fields, ignored: {_names(unknown)}")
        records = self._typed(name, row, records)
        self._duplicates(name, row, records)
        getattr(self, f"_{name}")(row, records)

    _TYPES: dict[str, dict[str, Callable[[Any], bool]]] = {
        "users": {"id": _is_int, "username": lambda v: isinstance(v, str)},
        "servers": {
            "id": _is_int,
            "name": lambda v: isinstance(v, str),
            "credentials": lambda v: isinstance(v, str),
        },
        "deployments": {
            "id": _is_int,
            "name": lambda v: isinstance(v, str),
            "server_id": lambda v: v is None or _is_int(v),
            "secret_env": lambda v: v is None or isinstance(v, str),
        },
        "templates": {"id": _is_int, "settings": lambda v: isinstance(v, dict)},
        "releases": {
            "id": _is_int,
            "deployment_id": _is_int,
            "config": lambda v: isinstance(v, dict),
        },
        "apps": {
            "id": _is_int,
            "name": lambda v: isinstance(v, str),
            "spec_text": lambda v: isinstance(v, str),
            "spec": lambda v: isinstance(v, dict),
        },
        "app_secrets": {
            "id": _is_int,
            "app_id": _is_int,
            "name": lambda v: isinstance(v, str),
            "value": lambda v: isinstance(v, str),
        },
        "app_releases": {
            "id": _is_int,
            "app_id": _is_int,
            "spec": lambda v: isinstance(v, dict),
            "parts": lambda v: isinstance(v, dict),
        },
        "webhooks": {
            "id": _is_int,
            "name": lambda v: isinstance(v, str),
            "url": lambda v: isinstance(v, str),
            "events": lambda v: isinstance(v, list),
        },
    }

    def _typed(
        self, name: str, row: SectionReport, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        checks = self._TYPES[name]
        good, bad = [], set()
        for record in records:
            wrong = [f for f, ok in checks.items() if f in record and not ok(record[f])]
            bad.update(wrong)
            if not wrong:
                good.append(record)
        if bad:
            row.add("malformed", "error", f"fields with a value of the wrong type: {_names(bad)}")
        return good

    def _duplicates(self, name: str, row: SectionReport, records: list[dict[str, Any]]) -> None:
        key: Callable[[dict[str, Any]], Any] | None = {
            "users": lambda r: r["username"],
            "servers": lambda r: r["name"],
            "apps": lambda r: r["name"],
        }.get(name)
        seen_ids: set[int] = set()
        seen_keys: set[Any] = set()
        dup_ids: set[int] = set()
        dup_keys: set[Any] = set()
        for record in records:
            (dup_ids if record["id"] in seen_ids else seen_ids).add(record["id"])
            if key is not None:
                k = key(record)
                (dup_keys if k in seen_keys else seen_keys).add(k)
        if dup_ids:
            row.add("duplicate", "error", f"ids appear more than once: {_names(dup_ids)}")
        if dup_keys:
            row.add("duplicate", "error", f"names appear more than once: {_names(dup_keys)}")

    def _users(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        clash = [r["username"] for r in records if r["username"] in self.current.usernames]
        if clash:
            row.add(
                "name_clash",
                "warn",
                f"{len(clash)} of {len(records)} usernames exist on this instance: {_names(clash)}",
            )

    def _servers(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        here = set(self.current.servers.values())
        clash = [r["name"] for r in records if r["name"] in here]
        if clash:
            row.add(
                "name_clash",
                "warn",
                f"{len(clash)} of {len(records)} server names exist on this instance: "
                f"{_names(clash)}",
            )
        self._sealed(row, "credentials of server", [(r["name"], r["credentials"]) for r in records])

    def _deployments(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        missing, clash, twice = [], [], []
        seen: set[tuple[str, str | None]] = set()
        for r in records:
            server_id = r["server_id"]
            target: str | None = None
            if server_id is not None:
                found = self.bundle_servers.get(server_id, self.current.servers.get(server_id))
                if found is None:
                    missing.append(f"{r['name']} (server_id {server_id})")
                    continue
                target = found
            if r.get("status") == "deleted" or r.get("deleted_at"):
                continue
            key = (r["name"], target)
            if key in seen:
                twice.append(f"{r['name']} on {target or 'the control host'}")
            seen.add(key)
            if key in self.current.deployments:
                clash.append(f"{r['name']} on {target or 'the control host'}")
        if twice:
            row.add("duplicate", "error", f"live deployments named twice: {_names(twice)}")
        if missing:
            row.add(
                "missing_server",
                "error",
                "deployments refer to servers that are neither in the bundle nor on this "
                f"instance: {_names(missing)}",
            )
        if clash:
            row.add(
                "name_clash",
                "warn",
                f"{len(clash)} deployments exist on the same target here: {_names(clash)}",
            )
        self._sealed(
            row,
            "secret env of deployment",
            [(r["name"], r["secret_env"]) for r in records if r.get("secret_env") is not None],
        )

    def _templates(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        return None

    def _releases(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        orphans = [
            f"release {r['id']} (deployment_id {r['deployment_id']})"
            for r in records
            if r["deployment_id"] not in self.bundle_deployments
        ]
        if orphans:
            row.add(
                "missing_deployment",
                "error",
                f"releases refer to deployments that are not in the bundle: {_names(orphans)}",
            )
        sealed = []
        for r in records:
            token = r["config"].get("secret_env")
            if token is not None:
                sealed.append((f"release {r['id']}", token))
        self._sealed(row, "secret env of", sealed)

    def _apps(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        clash = [r["name"] for r in records if r["name"] in self.current.apps]
        if clash:
            row.add(
                "name_clash",
                "warn",
                f"{len(clash)} of {len(records)} app names exist on this instance: {_names(clash)}",
            )

    def _orphans(self, row: SectionReport, what: str, records: list[dict[str, Any]]) -> None:
        orphans = [f"{what} {r['id']} (app_id {r['app_id']})" for r in records]
        orphans = [
            o for o, r in zip(orphans, records, strict=True) if r["app_id"] not in self.bundle_apps
        ]
        if orphans:
            row.add(
                "missing_app",
                "error",
                f"records refer to apps that are not in the bundle: {_names(orphans)}",
            )

    def _app_secrets(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        self._orphans(row, "secret", records)
        self._sealed(
            row,
            "app secret",
            [(f"{r['name']} ({r.get('environment')})", r["value"]) for r in records],
        )

    def _app_releases(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        self._orphans(row, "app release", records)

    def _webhooks(self, row: SectionReport, records: list[dict[str, Any]]) -> None:
        clash = [r["name"] for r in records if r["name"] in self.current.webhooks]
        if clash:
            row.add(
                "name_clash",
                "warn",
                f"{len(clash)} of {len(records)} webhook names exist on this instance: "
                f"{_names(clash)}",
            )
        self._sealed(row, "URL of webhook", [(r["name"], r["url"]) for r in records])

    def _decrypts(self, token: str) -> bool:
        if token not in self._decryptable:
            try:
                self._decryptable[token] = bool(self._can_decrypt(token))
            except Exception:  # a caller's cipher may raise on garbage; that is "cannot read"
                self._decryptable[token] = False
        return self._decryptable[token]

    def _sealed(self, row: SectionReport, what: str, items: list[tuple[str, Any]]) -> None:
        """Credentials and secret env values must be Fernet tokens this instance can open."""
        plain = [name for name, token in items if not _looks_sealed(token)]
        unreadable = [
            name for name, token in items if _looks_sealed(token) and not self._decrypts(token)
        ]
        if plain:
            row.add(
                "credentials_not_encrypted",
                "error",
                f"{what} {_names(plain)}: not an encrypted token (a bundle never holds "
                "plaintext secrets)",
            )
        if unreadable:
            needed = self.manifest.get("key_fingerprint")
            which = (
                f"the key with fingerprint {_short(needed, 40)}"
                if isinstance(needed, str) and needed
                else "a key"
            )
            held = ", ".join(self.current.key_fingerprints) or "none"
            row.add(
                "credentials_unreadable",
                "error",
                f"{what} {_names(unreadable)}: encrypted with {which}, which this instance "
                f"does not hold (it holds {held}); add that key to "
                "DEPLOYMATE_SERVER_CREDENTIALS_KEY (after the current one) before restoring",
            )


def _versions() -> str:
    *first, last = READABLE_VERSIONS
    return f"{', '.join(map(str, first))} and {last}"


def _looks_sealed(token: Any) -> bool:
    return isinstance(token, str) and token.startswith(FERNET_PREFIX)
