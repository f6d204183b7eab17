"""The webhook URL guard and payload, as pure functions: masking, address rules, Slack/Discord."""

from __future__ import annotations

import ipaddress

import pytest

from deploymate.notifications import guard, outbox


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "https://hooks.slack.com/services/T0/B0/abcdefSECRET1234",
            "https://hooks.slack.com/…1234",
        ),
        ("https://discord.com/api/webhooks/1/tok?wait=true", "https://discord.com/…true"),
        ("http://user:pw@[::1]:8080/a", "http://[::1]:8080/…"),
        ("http://example.org", "http://example.org/"),
        ("not a url at all", "…"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert guard.mask_url(url) == masked


@pytest.mark.parametrize(
    ("address", "private_ok", "always"),
    [
        ("8.8.8.8", True, False),
        ("2606:4700::1111", True, False),
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("10.1.2.3", False, False),
        ("172.31.0.1", False, False),
        ("192.168.0.1", False, False),
        ("fd00::1", False, False),
        ("100.64.0.1", False, False),
        ("169.254.169.254", False, True),
        ("::ffff:169.254.169.254", False, True),
        ("64:ff9b::a9fe:a9fe", False, True),
        ("2002:a9fe:a9fe::1", False, True),
        ("fe80::1", False, True),
        ("fd00:ec2::254", False, True),
        ("0.0.0.0", False, True),
        ("224.0.0.1", False, True),
        ("::ffff:127.0.0.1", False, False),
    ],
)
def test_address_rules(address: str, private_ok: bool, always: bool) -> None:
    ip = ipaddress.ip_address(address)
    strict = guard.address_problem(ip, allow_private=False)
    relaxed = guard.address_problem(ip, allow_private=True)
    assert (strict is None) is private_ok, strict
    assert (relaxed is not None) is always, relaxed


def test_payload_is_accepted_by_slack_and_discord() -> None:
    body = outbox.payload_for("deploy.failed", "x" * 5000, "/deployments/1")
    assert body["text"] == body["content"] and len(body["content"]) <= 2000
    assert body == {
        "text": body["text"],
        "content": body["text"],
        "allowed_mentions": {"parse": []},
        "event": "deploy.failed",
        "link": "/deployments/1",
    }


@pytest.mark.parametrize(
    "hostile",
    [
        "<!channel> deploy failed",
        "<!here|here> look",
        "<@U024BE7LH> you",
        "<https://evil.example|Click to fix the deploy>",
        "web & <script>",
    ],
)
def test_member_text_cannot_ping_or_link_in_slack(hostile: str) -> None:
    text = outbox.payload_for("deploy.failed", f"app {hostile}: release 2 failed", None)["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;" in text and text.count("&amp;") == hostile.count("&")


@pytest.mark.parametrize(
    ("hostile", "plain"),
    [
        ("@everyone deploy failed", "@\u200beveryone"),
        ("@here look", "@\u200bhere"),
        ("<@123456789> you", "<@\u200b123456789"),
        ("<@&987654321> role", "<@\u200b&987654321"),
        ("[Click to fix](https://evil.example)", r"\[Click to fix\]\(https://evil.example\)"),
        (
            "**bold** `code` ~~gone~~ ||spoiler||",
            r"\*\*bold\*\* \`code\` \~\~gone\~\~ \|\|spoiler\|\|",
        ),
    ],
)
def test_member_text_cannot_ping_or_format_in_discord(hostile: str, plain: str) -> None:
    body = outbox.payload_for("deploy.failed", hostile, "/deployments/1")
    assert plain in body["content"]
    assert body["allowed_mentions"] == {"parse": []}  # and Discord is told to ping nobody
