"""The one secret redactor: decides by a setting's *name* whether its value is a secret.

A key is secret when, split into words on ``_``/``-``, it is ``token``, ``api_key``, ``password``,
``secret``, ``authorization``, or ends in ``_token`` / ``_key`` / ``_secret`` / ``_password``
(``hf_token``, ``hub_api_key``). ``max_new_tokens``, ``batch_tokens`` and ``api_key_env`` (the *name* of an
environment variable) are not secrets. Used by the recipe manifest, the cards and the logs.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
_WHOLE = {"token", "api_key", "apikey", "password", "secret", "authorization", "auth"}
_SUFFIX = ("token", "key", "secret", "password")


def is_secret_key(key: Any) -> bool:
    """True for names that hold secrets (``token``, ``hf_token``, ``api_key``), False for ``max_new_tokens``."""
    name = re.sub(r"[-\s]+", "_", str(key).strip().lower())
    if name in _WHOLE:
        return True
    words = name.split("_")
    return len(words) > 1 and words[-1] in _SUFFIX


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-named key's (non-empty) value replaced by ``<redacted>``."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def drop_secrets(value: Any) -> Any:
    """Like :func:`redact`, but secret-named keys are left out entirely (for published cards)."""
    if isinstance(value, dict):
        return {k: drop_secrets(v) for k, v in value.items() if not is_secret_key(k)}
    if isinstance(value, (list, tuple)):
        return [drop_secrets(v) for v in value]
    return value
