"""Domain exceptions: raised by services, mapped once to HTTP (app.py) and once to the CLI."""

from __future__ import annotations


class DeployMateError(Exception):
    """Base class; `code` is the stable machine-readable name, `status` the HTTP status."""

    code = "error"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class ConfigurationError(DeployMateError):
    code = "configuration_error"
    status = 500


class ValidationFailed(DeployMateError):
    code = "validation_error"
    status = 422


class NotAuthenticated(DeployMateError):
    code = "not_authenticated"
    status = 401


class PermissionDenied(DeployMateError):
    code = "forbidden"
    status = 403


class NotFound(DeployMateError):
    code = "not_found"
    status = 404


class Conflict(DeployMateError):
    code = "conflict"
    status = 409


class RateLimited(DeployMateError):
    code = "rate_limited"
    status = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PayloadTooLarge(DeployMateError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(DeployMateError):
    code = "unsupported_media_type"
    status = 415


class Unavailable(DeployMateError):
    code = "unavailable"
    status = 503
