"""Servers against real lab hosts (sshd + dockerd in network namespaces)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from deploymate.core.errors import label
from tests.e2e.conftest import key_server
from tests.support.api import audit_rows, login, member_headers, second_client
from tests.support.lab import LabHost


def test_scan_returns_the_hosts_real_fingerprint(e2e_client: TestClient, lab_host: LabHost) -> None:
    res = e2e_client.post("/api/servers/scan-host-key", json={"host": lab_host.address, "port": 22})
    assert res.status_code == 200, res.text
    keys = res.json()["keys"]
    ed25519 = next(k for k in keys if k["type"] == "ssh-ed25519")
    assert ed25519["fingerprint_sha256"] == lab_host.host_key_fingerprint
    assert ed25519["public_key"] == lab_host.host_public_key


def test_key_authentication_test_and_known_hosts_export(
    e2e_client: TestClient, lab_host: LabHost, tmp_path: Path
) -> None:
    res = e2e_client.post("/api/servers", json=key_server(lab_host))
    assert res.status_code == 201, res.text
    server = res.json()
    assert server["host_key_fingerprint"] == lab_host.host_key_fingerprint
    assert server["has_private_key"] and not server["has_password"]
    result = e2e_client.post(f"/api/servers/{server['id']}/test").json()
    assert result["ok"] is True, result
    assert [s["step"] for s in result["steps"]] == [
        "reachability",
        "host_key",
        "authentication",
        "docker",
    ]
    assert result["docker_version"]
    listed = e2e_client.get("/api/servers").json()[0]
    assert listed["last_check_ok"] is True and listed["last_check_at"]
    exported = (tmp_path / "known_hosts").read_text()
    assert f"{lab_host.address} {lab_host.host_public_key}" in exported


def test_passphrase_protected_key(e2e_client: TestClient, lab_host: LabHost) -> None:
    body = key_server(
        lab_host,
        "pp",
        private_key=lab_host.client_key_encrypted.read_text(),
        passphrase=lab_host.key_passphrase,
    )
    res = e2e_client.post("/api/servers", json=body)
    assert res.status_code == 201, res.text
    assert res.json()["has_passphrase"]
    assert e2e_client.post(f"/api/servers/{res.json()['id']}/test").json()["ok"] is True
    wrong = e2e_client.post("/api/servers", json={**body, "name": "pp2", "passphrase": "not-it"})
    assert wrong.status_code == 422 and "passphrase" in wrong.json()["detail"]
    missing = e2e_client.post("/api/servers", json={**body, "name": "pp3", "passphrase": None})
    assert missing.status_code == 422 and "passphrase" in missing.json()["detail"]


def test_password_authentication(
    e2e_client: TestClient, lab_host_factory: Callable[..., LabHost]
) -> None:
    host = lab_host_factory(password_auth=True)
    body = {
        "name": "pw",
        "host": host.address,
        "port": 22,
        "username": host.password_user,
        "auth_type": "password",
        "password": host.password,
        "host_key": host.host_public_key,
    }
    res = e2e_client.post("/api/servers", json=body)
    assert res.status_code == 201, res.text
    assert e2e_client.post(f"/api/servers/{res.json()['id']}/test").json()["ok"] is True
    bad = e2e_client.post(
        "/api/servers", json={**body, "name": "pw-bad", "password": "wrong-password"}
    )
    result = e2e_client.post(f"/api/servers/{bad.json()['id']}/test").json()
    assert result["ok"] is False and result["failed_step"] == "authentication"


def test_changed_host_key_is_refused_and_audited(
    e2e_client: TestClient, lab_host_factory: Callable[..., LabHost]
) -> None:
    host = lab_host_factory()
    server = e2e_client.post("/api/servers", json=key_server(host, "moved")).json()
    assert e2e_client.post(f"/api/servers/{server['id']}/test").json()["ok"] is True
    host.regenerate_host_key()
    result = e2e_client.post(f"/api/servers/{server['id']}/test").json()
    assert result["ok"] is False and result["failed_step"] == "host_key"
    assert "host key changed" in result["steps"][-1]["detail"]
    diag = e2e_client.get(f"/api/servers/{server['id']}/diagnostics")
    assert diag.status_code == 502 and diag.json()["code"] == "host_key_changed"
    mismatches = [r for r in audit_rows(e2e_client) if r["action"] == "server.host_key_mismatch"]
    assert len(mismatches) == 2 and all(r["outcome"] == "failure" for r in mismatches)
    # the operator re-scans and confirms the new key; then it works again
    keys = e2e_client.post("/api/servers/scan-host-key", json={"host": host.address}).json()["keys"]
    new = next(k for k in keys if k["type"] == "ssh-ed25519")
    assert new["public_key"] == host.host_public_key
    pinned = e2e_client.post(
        f"/api/servers/{server['id']}/host-key", json={"public_key": new["public_key"]}
    )
    assert pinned.json()["host_key_fingerprint"] == host.host_key_fingerprint
    assert e2e_client.post(f"/api/servers/{server['id']}/test").json()["ok"] is True


def test_unreachable_host_fails_fast_naming_the_step(
    e2e_client: TestClient, lab_host_factory: Callable[..., LabHost]
) -> None:
    host = lab_host_factory()
    server = e2e_client.post("/api/servers", json=key_server(host, "down")).json()
    host.stop_sshd()
    started = time.monotonic()
    result = e2e_client.post(f"/api/servers/{server['id']}/test").json()
    assert time.monotonic() - started < 5
    assert result["ok"] is False and result["failed_step"] == "reachability"
    assert "not reachable" in result["steps"][0]["detail"]
    scan = e2e_client.post("/api/servers/scan-host-key", json={"host": host.address, "port": 22})
    assert scan.status_code == 422 and scan.json()["code"] == "unreachable"
    assert scan.json()["field"] == "host"
    row = e2e_client.get(f"/api/servers/{server['id']}").json()
    assert row["last_check_ok"] is False and "not reachable" in row["last_check_message"]


def test_diagnostics_are_true_for_the_host(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    server = e2e_client.post("/api/servers", json=key_server(lab_host, "diag")).json()
    from tests.support.images import copy_image

    copy_image("dm-test/web:v1", lab_host.docker_host)
    lab_host.docker("run", "-d", "--name", "diag-probe", "dm-test/web:v1")
    try:
        facts = e2e_client.get(f"/api/servers/{server['id']}/diagnostics").json()
    finally:
        lab_host.docker("rm", "-f", "diag-probe")
    assert facts["cpus"] == os.cpu_count()
    assert facts["docker_root"] == str(lab_host.data_root)
    assert (
        facts["memory_total_bytes"] > 0
        and 0 < facts["disk_free_bytes"] <= facts["disk_total_bytes"]
    )
    assert len(facts["load_average"]) == 3
    assert "diag-probe" in [c["name"] for c in facts["running_containers"]]
    assert 22 in facts["listening_ports"]
    version = lab_host.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert facts["docker_version"] == version
    # one connection, reused across the commands and calls
    e2e_client.get(f"/api/servers/{server['id']}/diagnostics")
    assert e2e_client.app.state.context.pool.open_count == 1  # type: ignore[attr-defined]


def test_suggested_ports_drop_a_port_once_something_listens(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    server = e2e_client.post("/api/servers", json=key_server(lab_host, "ports")).json()
    first = e2e_client.get(f"/api/servers/{server['id']}/suggested-ports").json()
    assert first["ports"] and not {22, 80, 443} & set(first["ports"])
    port = first["ports"][0]
    listener = subprocess.Popen(
        [
            "nsenter",
            f"--net=/var/run/netns/{lab_host.netns}",
            sys.executable,
            "-c",
            "import socket,sys,time;s=socket.socket();s.bind(('0.0.0.0',int(sys.argv[1])));"
            "s.listen();time.sleep(60)",
            str(port),
        ]
    )
    try:
        deadline = time.monotonic() + 10
        listen_row = f":{port:04X} 00000000:0000 0A"
        while (
            listen_row not in lab_host.exec("cat", "/proc/net/tcp").stdout
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        second = e2e_client.get(f"/api/servers/{server['id']}/suggested-ports").json()
    finally:
        listener.kill()
    assert port in second["listening"] and port not in second["ports"]


def test_credentials_never_leave_encrypted_storage(
    e2e_client: TestClient, lab_host: LabHost, tmp_path: Path, pg_server
) -> None:  # type: ignore[no-untyped-def]
    private_key = lab_host.client_key.read_text()
    key_body = next(line for line in private_key.splitlines() if "PRIVATE KEY" not in line)
    secret_password = "pw-canary-Zx81-never-shown"
    server = e2e_client.post("/api/servers", json=key_server(lab_host, "secret")).json()
    e2e_client.patch(
        f"/api/servers/{server['id']}", json={"auth_type": "password", "password": secret_password}
    )
    e2e_client.patch(
        f"/api/servers/{server['id']}", json={"auth_type": "key", "private_key": private_key}
    )
    responses = [
        e2e_client.get("/api/servers").text,
        e2e_client.get(f"/api/servers/{server['id']}").text,
        e2e_client.post(f"/api/servers/{server['id']}/test").text,
        e2e_client.get("/app/server-review").text,
        repr(audit_rows(e2e_client)),
    ]
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("dm.db*"))
    for secret in (key_body, secret_password):
        for text in responses:
            assert secret not in text
        assert secret.encode() not in db_bytes
    actions = [r["action"] for r in audit_rows(e2e_client)]
    assert actions.count("server.credentials_change") == 2

    # the same on PostgreSQL, searched in a full dump
    from deploymate.app import create_app
    from tests.conftest import ADMIN_PASSWORD, make_settings

    name = pg_server.create_database()
    settings = make_settings(
        tmp_path / "pg", pg_server.url(name), server_credentials_key=Fernet_key()
    )
    with TestClient(create_app(settings)) as pg_client:
        pg_client.headers["X-CSRF-Token"] = login(pg_client, "admin", ADMIN_PASSWORD)
        body = key_server(lab_host, "secret-pg")
        assert pg_client.post("/api/servers", json=body).status_code == 201
        dump = pg_server.dump(name)
    assert key_body not in dump and "servers" in dump
    pg_server.drop_database(name)


def Fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploymate.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_key_rotation_keeps_every_record_readable(tmp_path: Path, lab_host: LabHost) -> None:
    old, new = Fernet_key(), Fernet_key()
    env = {
        "DEPLOYMATE_DATA_DIR": str(tmp_path),
        "DEPLOYMATE_ADMIN_PASSWORD": "rotation-admin-pass-1",
    }
    from deploymate.app import create_app
    from deploymate.core.config import Settings

    with TestClient(
        create_app(
            Settings(
                data_dir=tmp_path,
                server_credentials_key=old,
                admin_password="rotation-admin-pass-1",
            )
        )
    ) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", "rotation-admin-pass-1")
        for i in range(3):
            assert (
                client.post("/api/servers", json=key_server(lab_host, f"r{i}")).status_code == 201
            )
    assert (
        _cli(["credentials", "audit"], {**env, "DEPLOYMATE_SERVER_CREDENTIALS_KEY": old}).returncode
        == 0
    )
    wrong = _cli(["credentials", "audit"], {**env, "DEPLOYMATE_SERVER_CREDENTIALS_KEY": new})
    assert wrong.returncode == 1 and "r0: undecryptable" in wrong.stdout
    rotated = _cli(
        ["credentials", "rotate"], {**env, "DEPLOYMATE_SERVER_CREDENTIALS_KEY": f"{new},{old}"}
    )
    assert rotated.returncode == 0 and "re-encrypted 3" in rotated.stdout
    only_new = {**env, "DEPLOYMATE_SERVER_CREDENTIALS_KEY": new}
    assert _cli(["credentials", "audit"], only_new).returncode == 0
    with TestClient(
        create_app(
            Settings(
                data_dir=tmp_path,
                server_credentials_key=new,
                admin_password="rotation-admin-pass-1",
            )
        )
    ) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", "rotation-admin-pass-1")
        servers = client.get("/api/servers").json()
        assert all(s["has_private_key"] for s in servers)
        assert client.post(f"/api/servers/{servers[0]['id']}/test").json()["ok"] is True
    refused = _cli(["serve", "--port", "1"], {**env, "DEPLOYMATE_SERVER_CREDENTIALS_KEY": old})
    assert (
        refused.returncode == 2
        and "cannot decrypt the credentials of 3 server(s)" in refused.stderr
    )
    inventory = _cli(["inventory"], only_new)
    assert inventory.returncode == 0 and "r0" in inventory.stdout and "ok " in inventory.stdout


def test_known_hosts_prepare_writes_a_file_ssh_accepts(tmp_path: Path, lab_host: LabHost) -> None:
    out = tmp_path / "kh"
    res = _cli(["known-hosts", "prepare", "--host", lab_host.address, "--output", str(out)], {})
    assert res.returncode == 0, res.stderr
    assert lab_host.host_key_fingerprint in res.stdout
    ssh = subprocess.run(
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={out}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-i",
            str(lab_host.client_key),
            f"root@{lab_host.address}",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ssh.returncode == 0, ssh.stderr
    bad = _cli(["known-hosts", "prepare", "--host", "-oProxyCommand=x", "--output", str(out)], {})
    assert bad.returncode == 2 and "host" in bad.stderr


def test_members_see_only_their_own_servers(e2e_client: TestClient, lab_host: LabHost) -> None:
    admin_server = e2e_client.post("/api/servers", json=key_server(lab_host, "admins")).json()
    members = {name: member_headers(e2e_client, name) for name in ("mo", "mi")}
    anon = second_client(e2e_client)
    mo_server = anon.post(
        "/api/servers", json=key_server(lab_host, "mos"), headers=members["mo"]
    ).json()
    assert [s["name"] for s in anon.get("/api/servers", headers=members["mo"]).json()] == ["mos"]
    assert anon.get("/api/servers", headers=members["mi"]).json() == []
    for path in (
        f"/api/servers/{mo_server['id']}",
        f"/api/servers/{admin_server['id']}/diagnostics",
    ):
        assert anon.get(path, headers=members["mi"]).status_code == 404
    assert (
        anon.post(f"/api/servers/{mo_server['id']}/test", headers=members["mi"]).status_code == 404
    )
    assert anon.delete(f"/api/servers/{mo_server['id']}", headers=members["mi"]).status_code == 404
    assert {s["name"] for s in e2e_client.get("/api/servers").json()} == {"admins", "mos"}
    assert anon.delete(f"/api/servers/{mo_server['id']}", headers=members["mo"]).status_code == 204
    assert "server.delete" in [r["action"] for r in audit_rows(e2e_client)]


def test_hostile_input_is_refused_before_any_connection(
    e2e_client: TestClient, lab_host: LabHost, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    base = key_server(lab_host, "evil")
    cases: list[tuple[str, object]] = [
        ("host", f"1.2.3.4 -oProxyCommand=touch {canary}"),
        ("host", f"-oProxyCommand=touch {canary}"),
        ("host", f"{lab_host.address};touch {canary}"),
        ("host", "$(touch /tmp/x)"),
        ("host", "a b"),
        ("host", "fe80::1%$(id);id`x`|y&&z"),
        ("host", "fe80::1%a\ngithub.com"),
        ("host", "a\n.example.com"),
        ("port", 0),
        ("port", 65536),
        ("port", "22 -o x"),
        ("port", -1),
        ("username", "root;touch x"),
        ("username", "-oProxyCommand=x"),
        ("username", "a b"),
        ("private_key", "not a key"),
        ("private_key", "x" * 100_000),
        ("notes", "n" * 100_000),
        ("name", "n" * 100_000),
        ("host_key", "ssh-ed25519 notbase64!!"),
    ]
    before = len(e2e_client.get("/api/servers").json())
    for field, value in cases:
        res = e2e_client.post("/api/servers", json={**base, field: value})
        assert res.status_code == 422, (field, value, res.text)
        assert label(field) in res.json()["detail"], (field, res.json())
        scan = e2e_client.post(
            "/api/servers/scan-host-key",
            json={
                "host": value if field == "host" else "x",
                "port": value if field == "port" else 22,
            },
        )
        if field in ("host", "port"):
            assert scan.status_code == 422, (field, value)
    assert len(e2e_client.get("/api/servers").json()) == before
    assert not canary.exists()
    assert not [r for r in audit_rows(e2e_client) if r["action"].startswith("server.")]


def test_delete_and_name_conflicts(e2e_client: TestClient, lab_host: LabHost) -> None:
    first = e2e_client.post("/api/servers", json=key_server(lab_host, "dup")).json()
    again = e2e_client.post("/api/servers", json=key_server(lab_host, "dup"))
    assert again.status_code == 409 and again.json()["code"] == "name_taken"
    edit = e2e_client.patch(f"/api/servers/{first['id']}", json={"port": 2222})
    assert edit.status_code == 200 and edit.json()["host_key"] is None  # new address: key unpinned
    test = e2e_client.post(f"/api/servers/{first['id']}/test").json()
    assert test["ok"] is False
    assert e2e_client.delete(f"/api/servers/{first['id']}").status_code == 204
    assert e2e_client.get(f"/api/servers/{first['id']}").status_code == 404


def test_unroutable_address_times_out_quickly(e2e_client: TestClient, lab_host: LabHost) -> None:
    # An address on the lab host's /30 that nobody holds: the connection cannot complete.
    parts = lab_host.address.split(".")
    unused = ".".join([*parts[:3], str(int(parts[3]) + 1)])
    started = time.monotonic()
    res = e2e_client.post("/api/servers/scan-host-key", json={"host": unused, "port": 22})
    assert res.status_code == 422 and time.monotonic() - started < 20
    with socket.socket() as s:
        s.settimeout(0.5)
        assert s.connect_ex((unused, 22)) != 0
