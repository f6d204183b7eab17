"""Failures of the runtime layer; services map them to domain errors."""

from __future__ import annotations

from deploymate.core.errors import DeployMateError


class RuntimeFailure(DeployMateError):
    """A target could not do what was asked; `step` names where it failed."""

    code = "target_error"
    status = 502

    def __init__(self, detail: str, *, step: str = "command", code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.step = step


class CommandFailed(RuntimeFailure):
    code = "command_failed"

    def __init__(self, program: str, exit_status: int, output: str) -> None:
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        super().__init__(f"{program} exited with status {exit_status}: {last[:500]}")
        self.exit_status = exit_status
        self.output = output


class CommandTimeout(RuntimeFailure):
    code = "command_timeout"

    def __init__(self, program: str, seconds: float) -> None:
        super().__init__(f"{program} did not finish within {seconds:g}s")


class Unreachable(RuntimeFailure):
    code = "unreachable"
    status = 502


class HostKeyChanged(RuntimeFailure):
    code = "host_key_changed"
    status = 502


class AuthenticationFailed(RuntimeFailure):
    code = "authentication_failed"
    status = 502
