"""Keep secrets out of logs and messages.

Blocks hold secrets as ``SecretStr``; the one place a connector unwraps one is
:func:`reveal`, which also remembers the value so :func:`redact` can mask it in any
text flowport logs or raises (a driver may echo a password back in its error).
"""

from __future__ import annotations

import re
import threading

from pydantic import SecretStr

MASK = "**********"

_lock = threading.Lock()
_revealed: set[str] = set()

# user:password@ in URLs, and key=value / key: value pairs whose key looks secret.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s/]+)@")
_SECRET_PAIR = re.compile(
    r"(?i)(?P<key>\b[\w-]*(?:password|passwd|secret|token|api[_-]?key|credential)[\w-]*"
    r"[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s\"',;&}]+)"
)


def reveal(secret: SecretStr | str | None) -> str | None:
    """Return the plain value of ``secret`` and register it for redaction."""
    if secret is None:
        return None
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if len(value) >= 4:  # masking a 1-3 character value would garble ordinary text
        with _lock:
            _revealed.add(value)
    return value


def redact(text: str) -> str:
    """Mask revealed secrets, URL passwords and ``password=...``-style pairs in ``text``."""
    if _revealed:
        with _lock:
            values = sorted(_revealed, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}:{MASK}@", text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group('key')}{MASK}", text)
