"""The JSON Schema of `deploymate.yaml`: published (`deploymate app schema`) and used to validate.

Key names are part of the contract: extend, never rename. `x-expected` says in words what a value
must be; validation messages use it ("expected a DNS label ..., got ...").
"""

from __future__ import annotations

from typing import Any

SCHEMA_ID = "https://deploymate.dev/schemas/app-spec.json"

DNS_LABEL = {
    "type": "string",
    "pattern": r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
    "x-expected": "a name of lower-case letters, digits and inner hyphens, at most 40 characters",
}
ENV_NAME = {
    "type": "string",
    "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    "x-expected": "a variable name (letters, digits and _, not starting with a digit)",
}
HOST_NAME = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
    "x-expected": "a lower-case host name like shop.example.com (no scheme, port, path or *)",
}
PATH_IN_CONTAINER = {
    "type": "string",
    "pattern": r"^/[^,:=\x00\n\r]*$",
    "not": {"pattern": r"^/+$|/\.\.(/|$)"},
    "maxLength": 1024,
    "x-expected": "an absolute path other than / (no commas, colons, = or ..)",
}
ENV_VALUE = {"type": "string", "maxLength": 32768, "pattern": r"^[^\n\r\x00]*$"}
ENV_MAP = {
    "type": "object",
    "propertyNames": ENV_NAME,
    "additionalProperties": {
        **ENV_VALUE,
        "x-expected": 'a string on one line (quote numbers and booleans: "8000", "true")',
    },
    "maxProperties": 200,
}
COMMAND = {
    "type": "array",
    "items": {"type": "string", "maxLength": 4096, "pattern": r"^[^\x00]*$"},
    "minItems": 1,
    "maxItems": 64,
    "x-expected": "a list of strings, like [python, -m, shop.worker]",
}
SECONDS = {"type": "number", "minimum": 0, "maximum": 3600}
IMAGE = {
    "type": "string",
    "maxLength": 512,
    "pattern": r"^[a-z0-9][a-z0-9._/:@-]*$",
    "not": {"pattern": r"^-"},
    "x-expected": "an image reference like registry.example.com/team/app:1.2",
}

HEALTH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["http", "tcp"]},
        "path": {
            "type": "string",
            "pattern": r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$",
            "maxLength": 512,
            "x-expected": "a path starting with / without spaces or quotes",
        },
        "expect": {"type": "integer", "minimum": 100, "maximum": 599},
        "interval": {"type": "number", "minimum": 0.2, "maximum": 60},
        "timeout": {"type": "number", "minimum": 0.2, "maximum": 60},
        "retries": {"type": "integer", "minimum": 1, "maximum": 300},
        "start_period": {"type": "number", "minimum": 0, "maximum": 600},
    },
}
VOLUME = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "path"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": r"^[a-z0-9][a-z0-9_.-]{0,62}$",
            "x-expected": "a volume name of lower-case letters, digits, _ . -",
        },
        "path": PATH_IN_CONTAINER,
        "read_only": {"type": "boolean"},
    },
}
SMOKE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "http": HEALTH["properties"]["path"],  # type: ignore[index]
        "method": {"enum": ["GET", "HEAD"]},
        "expect": {"type": "integer", "minimum": 100, "maximum": 599},
        "contains": {"type": "string", "maxLength": 256, "pattern": r"^[^\n\r\x00]*$"},
        "command": COMMAND,
        "timeout": {"type": "number", "minimum": 0.2, "maximum": 300},
    },
    "oneOf": [{"required": ["http"]}, {"required": ["command"]}],
    "x-expected": "either `http: /path` or `command: [...]`",
}
BUILD = {
    "type": "object",
    "additionalProperties": False,
    "required": ["context"],
    "properties": {
        "context": {"type": "string", "maxLength": 1024},
        "dockerfile": {"type": "string", "maxLength": 1024},
        "target": {"type": "string", "maxLength": 128},
        "args": {**ENV_MAP},
        # Names under secrets: handed to the build as BuildKit secrets, never as build args.
        "secrets": {"type": "array", "items": ENV_NAME, "uniqueItems": True, "maxItems": 20},
    },
}
SERVICE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": IMAGE,
        "build": BUILD,
        "port": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "x-expected": "an integer 1-65535",
        },
        "command": COMMAND,
        "health": HEALTH,
        "domains": {"type": "array", "items": HOST_NAME, "maxItems": 20, "uniqueItems": True},
        "tls": {"enum": ["auto", "internal", "off"]},
        "volumes": {"type": "array", "items": VOLUME, "maxItems": 20},
        "smoke": {"type": "array", "items": SMOKE, "maxItems": 20},
        "drain": SECONDS,
        "env": ENV_MAP,
        "paths": {"type": "array", "items": {"type": "string", "maxLength": 1024}},
    },
    "oneOf": [{"required": ["image"]}, {"required": ["build"]}],
    "x-expected": "a service with either `image` or `build`",
}
ENVIRONMENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["servers"],
    "properties": {
        "kind": {"enum": ["preview", "staging", "production"]},
        "servers": {
            "type": "array",
            "items": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "x-expected": "a server name",
            },
            "minItems": 1,
            "maxItems": 100,
            "uniqueItems": True,
            "x-expected": "a list of at least one server name",
        },
        "env": ENV_MAP,
        "domains": {
            "type": "object",
            "propertyNames": DNS_LABEL,
            "additionalProperties": {"type": "array", "items": HOST_NAME, "maxItems": 20},
        },
        "replicas": {
            "type": "object",
            "propertyNames": DNS_LABEL,
            "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 20},
        },
        "rollout": {"enum": ["all", "canary"]},
        "parallel": {"type": "integer", "minimum": 1, "maximum": 50},
    },
}

APP_SPEC: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "DeployMate app spec (deploymate.yaml)",
    "type": "object",
    "additionalProperties": False,
    "required": ["app", "services", "environments"],
    "properties": {
        "app": DNS_LABEL,
        "services": {
            "type": "object",
            "propertyNames": DNS_LABEL,
            "additionalProperties": SERVICE,
            "minProperties": 1,
            "maxProperties": 50,
        },
        "env": ENV_MAP,
        "secrets": {"type": "array", "items": ENV_NAME, "uniqueItems": True, "maxItems": 200},
        "required_env": {
            "type": "array",
            "items": ENV_NAME,
            "uniqueItems": True,
            "maxItems": 200,
        },
        "environments": {
            "type": "object",
            "propertyNames": DNS_LABEL,
            "additionalProperties": ENVIRONMENT,
            "minProperties": 1,
            "maxProperties": 50,
        },
        "drift": {
            "type": "object",
            "additionalProperties": False,
            "required": ["command"],
            "properties": {"command": COMMAND, "service": DNS_LABEL},
        },
        "migrations": {
            "type": "object",
            "additionalProperties": False,
            "required": ["path", "applied"],
            "properties": {
                "path": {"type": "string", "minLength": 1, "maxLength": 1024},
                "applied": COMMAND,
                "service": DNS_LABEL,
            },
        },
        "shared_paths": {"type": "array", "items": {"type": "string", "maxLength": 1024}},
        "preview": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "domain": HOST_NAME,
                "env": ENV_MAP,
                "secrets": {"type": "array", "items": ENV_NAME, "uniqueItems": True},
                "ttl_hours": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": 24 * 90,
                    "x-expected": "a number of hours from 1 to 2160 (90 days)",
                },
                "servers": ENVIRONMENT["properties"]["servers"],  # type: ignore[index]
            },
        },
    },
}
