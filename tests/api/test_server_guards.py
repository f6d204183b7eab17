"""SSH paths are not a port scanner, and a pinned key cannot be displaced (findings 15, 16).

No SSH server is needed: the probes go to closed ports and to a plain TCP listener on 127.0.0.1
that speaks no SSH.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support.api import login, member_headers, second_client

UNIFORM = "no SSH server answered at"


@pytest.fixture
def admin(client: TestClient) -> Iterator[TestClient]:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    yield client


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def not_ssh() -> Iterator[int]:
    """A TCP listener that answers like a web server and hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    server.close()


def _key_line() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


def _server(name: str, host: str, port: int, host_key: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "name": name,
        "host": host,
        "port": port,
        "username": "deploy",
        "auth_type": "password",
        "password": "server-password-1",
    }
    if host_key:
        body["host_key"] = host_key
    return body


def test_a_pin_for_an_address_another_owner_pins_never_replaces_their_line(
    admin: TestClient, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    admin.app.state.context.settings.ssh_known_hosts_file = known  # type: ignore[attr-defined]
    theirs, mine = _key_line(), _key_line()
    res = admin.post("/api/servers", json=_server("prod", "shared.example.test", 22, theirs))
    assert res.status_code == 201, res.text
    prod_id = res.json()["id"]
    assert known.read_text() == f"shared.example.test {theirs}\n"

    member = member_headers(admin, "mallory")
    api = second_client(admin)
    res = api.post(
        "/api/servers", headers=member, json=_server("evil", "shared.example.test", 22, mine)
    )
    assert res.status_code == 201, res.text
    assert known.read_text() == f"shared.example.test {theirs}\n"
    res = api.post(
        f"/api/servers/{res.json()['id']}/host-key", headers=member, json={"public_key": mine}
    )
    assert res.status_code == 200, res.text
    assert known.read_text() == f"shared.example.test {theirs}\n"  # their line, theirs alone
    # The admin's own re-pin (a legitimate key rotation) is written.
    rotated = _key_line()
    res = admin.post(f"/api/servers/{prod_id}/host-key", json={"public_key": rotated})
    assert res.status_code == 200 and known.read_text() == f"shared.example.test {rotated}\n"


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fe80::1", "0.0.0.0", "::ffff:169.254.169.254", "100.100.100.200"],
)
def test_members_never_reach_link_local_or_metadata_addresses(
    admin: TestClient, address: str
) -> None:
    admin.app.state.context.settings.ssh_allow_private = True  # type: ignore[attr-defined]
    member = member_headers(admin, "mallory")
    api = second_client(admin)
    res = api.post("/api/servers/scan-host-key", headers=member, json={"host": address, "port": 22})
    assert res.status_code == 422 and "always refused" in res.json()["detail"], res.text
    res = api.post("/api/servers", headers=member, json=_server("meta", address, 22))
    assert res.status_code == 422 and res.json()["field"] == "host", res.text


def test_members_reach_private_addresses_only_when_allowed(admin: TestClient) -> None:
    member = member_headers(admin, "mallory")
    api = second_client(admin)
    port = _closed_port()
    for host in ("127.0.0.1", "10.1.2.3", "192.168.0.10", "localhost"):
        res = api.post(
            "/api/servers/scan-host-key", headers=member, json={"host": host, "port": port}
        )
        assert res.status_code == 422, (host, res.text)
        assert "DEPLOYMATE_SSH_ALLOW_PRIVATE=true" in res.json()["detail"]
    # Admins manage the instance's own network and are not held to the policy.
    res = admin.post("/api/servers/scan-host-key", json={"host": "127.0.0.1", "port": port})
    assert res.status_code == 422 and UNIFORM not in res.json()["detail"]


def test_a_member_cannot_tell_closed_from_open_but_not_ssh(admin: TestClient, not_ssh: int) -> None:
    admin.app.state.context.settings.ssh_allow_private = True  # type: ignore[attr-defined]
    member = member_headers(admin, "mallory")
    api = second_client(admin)
    closed = _closed_port()
    answers = []
    for port in (closed, not_ssh):
        res = api.post(
            "/api/servers/scan-host-key", headers=member, json={"host": "127.0.0.1", "port": port}
        )
        assert res.status_code == 422, res.text
        answers.append((res.json()["code"], res.json()["detail"].replace(str(port), "PORT")))
    assert answers[0] == answers[1] and UNIFORM in answers[0][1], answers
    tests = []
    for n, port in enumerate((closed, not_ssh)):
        res = api.post(
            "/api/servers", headers=member, json=_server(f"probe-{n}", "127.0.0.1", port)
        )
        assert res.status_code == 201, res.text
        result = api.post(f"/api/servers/{res.json()['id']}/test", headers=member).json()
        tests.append(
            [(s["step"], s["ok"], s["detail"].replace(str(port), "PORT")) for s in result["steps"]]
        )
    assert tests[0] == tests[1] == [("reachability", False, tests[0][0][2])], tests
    assert UNIFORM in tests[0][0][2]
    # An admin sees what happened, to fix it.
    admin_scan = [
        admin.post("/api/servers/scan-host-key", json={"host": "127.0.0.1", "port": p}).json()
        for p in (closed, not_ssh)
    ]
    assert admin_scan[0]["detail"] != admin_scan[1]["detail"].replace(str(not_ssh), str(closed))
