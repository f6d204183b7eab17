"""Password policy and hashing."""

from __future__ import annotations

import pytest

from deploymate.core.passwords import hash_password, password_problem, verify_password


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 12"),
        ("x" * 257, "at most 256"),
        ("Password1234", "too common"),
        ("QWERTYUIOP1234", "too common"),
        ("aaaaaaaaaaaaaaa", "too common"),
        ("carol.admin.x", None),
        ("Carol.Admin.X", "must not be the username"),
    ],
)
def test_policy(password: str, problem: str | None) -> None:
    found = password_problem(password, username="carol.admin.x")
    if problem is None:
        assert found == "must not be the username"
    else:
        assert found is not None and problem in found


def test_accepts_a_good_passphrase_of_128_characters() -> None:
    assert password_problem("kx7-" * 32, "someone") is None


def test_hash_is_argon2id_and_verifies_the_whole_password() -> None:
    secret = "a-very-long-passphrase-" * 6
    hashed = hash_password(secret)
    assert hashed.startswith("$argon2id$") and secret not in hashed
    assert verify_password(hashed, secret)
    assert not verify_password(hashed, secret[:72])
    assert not verify_password(None, secret)
