"""HTTP client for CLI commands that go through a running instance's API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deploymate.cli.config_file import CliConfig
from deploymate.core import errors

if TYPE_CHECKING:
    import httpx

_BY_STATUS: dict[int, type[errors.DeployMateError]] = {
    401: errors.NotAuthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.ValidationFailed,
    503: errors.Unavailable,
}


def raise_for_error(response: httpx.Response) -> None:
    """Turn the API's {"detail", "code"} error into the matching domain exception."""
    if response.is_success:
        return
    try:
        body = response.json()
        detail, code = str(body.get("detail")), body.get("code")
    except ValueError:
        detail, code = f"HTTP {response.status_code} from {response.url}", None
    if response.status_code == 429:
        raise errors.RateLimited(detail, retry_after=int(response.headers.get("retry-after", "60")))
    cls = _BY_STATUS.get(response.status_code, errors.DeployMateError)
    raise cls(detail, code=code)


def unreachable(url: str, exc: httpx.HTTPError) -> str:
    """A failed connection in words, with what to check."""
    import httpx

    if isinstance(exc, httpx.ConnectError):
        return (
            f"nothing answers at {url}; check the URL and that `deploymate serve` runs there "
            "and listens on an address this machine can reach"
        )
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time; check the network, then try again"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"{url} is not a URL DeployMate can use; write it like https://deploy.example.com"
    return f"cannot reach {url}: {exc}"


def client(base_url: str, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
    import httpx  # here, not at import: `deploymate --help` must start fast

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)


def request(config: CliConfig, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    try:
        with client(config.url, config.token) as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise errors.Unavailable(unreachable(config.url, exc)) from None
    raise_for_error(response)
    return response.json() if response.content else None
