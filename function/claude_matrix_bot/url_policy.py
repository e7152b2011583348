"""Which URLs the bot talks to, and how it names them (issue 21).

- Plain `http://` carries the OAuth and Matrix tokens in clear: it is refused for the
  Anthropic endpoints and the homeserver unless the host is loopback (a local test rig)
  or `ALLOW_PLAIN_HTTP` is on (a mesh that encrypts, a lab).
- A URL in an error message is shown without its userinfo (`user:password@`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

OPT_IN = "ALLOW_PLAIN_HTTP"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_url(url: str) -> str:
    """`url` without `user:password@` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    except ValueError:
        return "<a URL that cannot be parsed>"


def plain_http_problem(name: str, url: str) -> str | None:
    """Why `url` (the value of `name`) may not be used without the opt-in, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None  # the URL's own parser reports it
    if parts.scheme.lower() != "http" or is_loopback(host):
        return None
    return (
        f"{name}: plain http:// to {host} would send the tokens unencrypted; "
        f"use https://, or set {OPT_IN}=1 if the network encrypts it"
    )


def plain_http_problems(base_url: str, token_url: str, creds_dir: Path | None) -> list[str]:
    """Every URL the bot would send a token to over plain http (the homeserver's from
    `MATRIX_CREDS_DIR/homeserver_url` when `creds_dir` is given)."""
    found = [
        problem
        for name, url in (("ANTHROPIC_BASE_URL", base_url), ("ANTHROPIC_TOKEN_URL", token_url))
        if (problem := plain_http_problem(name, url))
    ]
    if creds_dir is not None:
        try:
            homeserver = (creds_dir / "homeserver_url").read_bytes()[:4096].decode("utf-8", "replace").strip()
        except OSError:
            homeserver = ""  # credential_problems names a missing file
        if problem := plain_http_problem("MATRIX_CREDS_DIR/homeserver_url", homeserver):
            found.append(problem)
    return found
