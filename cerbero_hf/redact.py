"""The one secret redactor: a value is secret when the setting that holds it is *declared* secret.

cerbero-hf's own settings never hold a secret: they name the environment variable that does (``api_key_env``),
and that name is recorded as it is. The settings of the libraries we pass through that do hold one are declared
in :data:`SECRET_KEYS` (transformers' ``hub_token``, the Hub's ``token``, an OpenAI-compatible ``api_key``, an HTTP
``Authorization`` header, ...). Nothing is redacted for a word in its name: ``eos_token``, ``pad_token``,
``max_new_tokens`` and ``batch_tokens`` are settings, recorded as they are. Used by the recipe manifest, the
cards and the logs.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
# Every key whose value is a credential, in the configs and payloads we record (compared in lower case, with
# "-" as "_"). A library setting that holds a secret is added here by name.
SECRET_KEYS = frozenset({
    "token", "hf_token", "hub_token", "push_to_hub_token", "hub_api_key", "use_auth_token", "auth_token",
    "api_key", "apikey", "openai_api_key", "password", "secret", "client_secret", "authorization", "auth",
    "access_token", "refresh_token", "bearer_token",
})


def is_secret_key(key: Any) -> bool:
    """True for the declared secret settings (``token``, ``hub_token``, ``api_key``); False for every other name,
    ``eos_token`` and ``max_new_tokens`` included."""
    return re.sub(r"[-\s]+", "_", str(key).strip().lower()) in SECRET_KEYS


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
