"""Operator audits without an instance: a production env file, and secrets in a tree. Every
finding is checked to name the place, never the secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from deploymate.audits import env_file, secret_scan

GOOD = f"""# production
DEPLOYMATE_ENV=production
DEPLOYMATE_SERVER_CREDENTIALS_KEY={Fernet.generate_key().decode()}
export DEPLOYMATE_SECURE_COOKIES=true
DEPLOYMATE_DATABASE_URL="postgresql+psycopg://dm:Kq8v-long-Random-pass@db/dm"
DEPLOYMATE_TRUSTED_PROXIES=10.0.0.0/8
"""


def test_a_good_production_env_file_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "prod.env"
    path.write_text(GOOD)
    assert env_file.audit(path, behind_proxy=True) == []


def test_each_weakness_is_a_finding_that_never_shows_the_value(tmp_path: Path) -> None:
    path = tmp_path / "weak.env"
    path.write_text(
        "DEPLOYMATE_ENV=development\n"
        "DEPLOYMATE_SERVER_CREDENTIALS_KEY=not-a-fernet-key-at-all\n"
        "DEPLOYMATE_ADMIN_PASSWORD=password123\n"
        "DEPLOYMATE_DATABASE_URL=postgresql+psycopg://postgres:postgres@db/dm\n"
        "DEPLOYMATE_SSH_HOST_KEY_CHECKING=accept-new\n"
        "DEPLOYMATE_LOCAL_DOCKER_ENABLED=true\n"
    )
    findings = env_file.audit(path, behind_proxy=True)
    assert [f.check for f in findings] == [
        "env",
        "credentials_key",
        "secure_cookies",
        "admin_password",
        "database_password",
        "host_key_checking",
        "local_docker",
        "trusted_proxies",
    ]
    assert [f.severity for f in findings].count("warn") == 1
    text = "\n".join(f.render() for f in findings)
    for secret in ("not-a-fernet-key-at-all", "password123", "postgres:postgres"):
        assert secret not in text
    assert "`deploymate credentials generate-key`" in text


def test_missing_binary_and_huge_files_cannot_be_audited(tmp_path: Path) -> None:
    binary = tmp_path / "blob.env"
    binary.write_bytes(b"\x00\x01ELF\x00")
    huge = tmp_path / "huge.env"
    with huge.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    for path, words in (
        (tmp_path / "absent.env", "does not exist"),
        (binary, "is binary"),
        (huge, "over 1048576 refused"),
        (tmp_path, "is not a file"),
    ):
        with pytest.raises(env_file.EnvFileUnreadable, match=words):
            env_file.audit(path)


AWS = "AKIA" + "QZ7X4M2K9V3B8N6P"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
RANDOM = "Zx9Qv3Lm7Tp2Wk8Rb4Nc6Yd1Hs5Gf0Ja"


def _tree(root: Path) -> None:
    (root / "app").mkdir(parents=True)
    (root / "app" / "settings.py").write_text(
        f'AWS_KEY = "{AWS}"\napi_token = "{RANDOM}"\npassword = "aaaaaaaaaaaaaaaaaaaaaaaa"\n'
    )
    (root / "deploy.sh").write_text(f"export GH={GITHUB}\n")
    (root / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n")
    (root / "image.png").write_bytes(b"\x89PNG\x00\x00" + AWS.encode())
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(f"token={RANDOM}\n")
    (root / "loop").symlink_to(root)  # a loop, never followed
    os.mkfifo(root / "pipe")  # never read: it would block


def test_secrets_in_a_tree_are_found_masked_and_can_be_accepted(tmp_path: Path) -> None:
    _tree(tmp_path)
    findings = secret_scan.scan(tmp_path)
    kinds = sorted((f.check, f.where.removeprefix(str(tmp_path))) for f in findings)
    assert kinds == [
        ("aws_access_key", "/app/settings.py:1"),
        ("github_token", "/deploy.sh:1"),
        ("high_entropy_api_token", "/app/settings.py:2"),
        ("private_key", "/id_rsa:1"),
    ]
    text = "\n".join(f.render() for f in findings)
    for secret in (AWS, GITHUB, RANDOM):
        assert secret not in text and secret[:4] in text
    allow = tmp_path / "allow.txt"
    allow.write_text(f"{secret_scan.fingerprint(RANDOM)}  # a test fixture\n")
    rest = secret_scan.scan(tmp_path, secret_scan.load_allowed(allow))
    assert sorted(f.check for f in rest) == ["aws_access_key", "github_token", "private_key"]
