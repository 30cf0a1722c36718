"""No secret in git: every tracked file (and every file about to be committed) is scanned for credentials in URLs,
private keys, cloud and service tokens, and password assignments with a literal value."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import REPO

PATTERNS = {
    "a password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"<>]+:([^\s@/'\"<>]+)@", re.I),
    "a private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "an AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "a Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "a PyPI token": re.compile(r"\bpypi-[A-Za-z0-9_-]{50,}"),
    "a password assignment": re.compile(
        r"""(?i)\b(?:password|passwd|pwd|secret|token|api_key)\s*[:=]\s*["']([^"'\s]{8,})["']"""),
}
# what a documented example or a test may write in place of a secret: a placeholder, never a value that works
PLACEHOLDER = re.compile(r"(?i)^(?:<[^>]*>|\$\{?[A-Z_]+\}?|\.\.\.|\*+|x+|pass(?:word)?|secret|s3cr3t[-\w]*|"
                         r"changeme|example|wrong|\{[^}]*\})$")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True)
    return [f for f in out.stdout.decode().split("\0") if f]


def findings(text: str) -> list[tuple[str, str]]:
    found = []
    for what, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            value = m.group(1) if m.groups() else m.group(0)
            if m.groups() and PLACEHOLDER.match(value):
                continue
            found.append((what, m.group(0)[:80]))
    return found


def test_the_scanner_finds_what_it_looks_for():
    # each sample is cut in two here, so that this file itself holds none of them
    assert [w for w, _ in findings("tune.storage: postgresql://wildtrain:" + "Zq8vN2kLmP4x@127.0.0.1:55432/optuna")] \
        == ["a password in a URL"]
    assert findings("AWS_ACCESS_KEY_ID=AKIA" + "IOSFODNN7EXAMPLE")[0][0] == "an AWS access key id"
    assert findings('password = "hunter2' + 'hunter2"')[0][0] == "a password assignment"
    assert findings("-----BEGIN OPENSSH " + "PRIVATE KEY-----")[0][0] == "a private key"
    for fine in ("postgresql://USER@HOST:PORT/DB", "postgresql://user:<password>@host/db",
                 "https://user:${TOKEN}@example.org", 'password = "..."', "http://127.0.0.1:5050/api"):
        assert findings(fine) == [], fine


def test_no_secret_in_the_repository():
    hits = []
    for name in tracked_files():
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (images, models)
            continue
        for what, text in findings(data.decode("utf-8", errors="replace")):
            hits.append(f"{name}: {what}: {text}")
    if hits:
        pytest.fail("secrets in the repository (move them to the environment or a 0600 file):\n" + "\n".join(hits))
