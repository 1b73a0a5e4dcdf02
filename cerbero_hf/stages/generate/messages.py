"""One self-chat step's messages: the prompt for the next role, and the one message parsed out of the answer.

Used by :class:`~cerbero_hf.stages.generate.selfchat.SelfChat`. The transcript is rendered with the one
renderer (:func:`cerbero_hf.transcript.render`) in the Cerbero format of the language pack.
"""

from __future__ import annotations

from cerbero_hf.stages.generate.backends.base import GenerationError, GeneratorRejected, Request, Result
from cerbero_hf.transcript import cerbero_format, render

# why a candidate message is rejected: too similar to a stored one, or unusable text (parse_message)
REJECT_REASONS = ("similar", "empty", "length", "too_long")


def render_transcript(pack, messages: list[dict], next_role: str) -> str:
    """``[|Umano|] …\\n[|Assistente|] …\\n`` for ``messages`` (the Cerbero format), then the tag of ``next_role``."""
    fmt = cerbero_format(pack)
    return render(messages, fmt) + (fmt.user_tag if next_role == "user" else fmt.assistant_tag)


def build_request(pack, messages: list[dict], role: str, *, max_new_tokens: int = 512, temperature: float = 0.7,
                  top_p: float = 0.9, seed: int | None = None) -> Request:
    """The request for ``role``: system prompt + transcript (chat); the transcript alone (completion)."""
    transcript = render_transcript(pack, messages, role)
    template = pack.selfchat_system_user if role == "user" else pack.selfchat_system_assistant
    system = template.format(user_tag=pack.user_tag, assistant_tag=pack.assistant_tag)
    return Request(messages=[{"role": "system", "content": system}, {"role": "user", "content": transcript}],
                   prompt=transcript, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                   stop=[pack.user_tag, pack.assistant_tag], seed=seed)


def parse_message(pack, result: Result, role: str, *, max_chars: int = 8000,
                  reject_truncated: bool = True) -> tuple[str | None, str | None]:
    """Exactly one message out of the generator's text: ``(message, None)`` or ``(None, reason)``.

    A leading tag of ``role`` is dropped, the text is cut at the first role tag, stripped. Reasons:
    ``empty``, ``too_long`` (over ``max_chars``), ``length`` (cut by the token limit with no tag seen).
    """
    text = result.text or ""
    stripped = text.lstrip()
    own = pack.user_tag if role == "user" else pack.assistant_tag
    if stripped.startswith(own):
        stripped = stripped[len(own):]
    cuts = [i for i in (stripped.find(t) for t in {pack.user_tag, pack.assistant_tag}) if i >= 0]
    message = (stripped[:min(cuts)] if cuts else stripped).strip()
    if not message:
        return None, "empty"
    if not cuts and reject_truncated and result.finish_reason == "length":
        return None, "length"
    if len(message) > max_chars:
        return None, "too_long"
    return message, None


def watch_first_failures(first: list, err: GenerationError | None, limit: int, backend) -> list | None:
    """The fail-fast rule: the first ``limit`` requests all failing the same non-transient way stop the run.

    ``first`` holds the failures seen while every request failed; returns the updated list, or ``None`` once
    disarmed (an answer, a network fault or two different errors: not the settings). Raises
    :class:`GeneratorRejected` (an input error naming the endpoint and the server's message) at ``limit``.
    """
    if err is None or err.transient or (first and err.kind != first[0].kind):
        return None
    first.append(err)
    if len(first) < limit:
        return first
    describe = backend.describe()
    who = f"the endpoint {describe['url']}" if describe.get("url") else f"the generator {backend.model_id}"
    what = f"{err.reason}: {err.detail}" if err.detail else err.reason
    raise GeneratorRejected(f"{who} failed the first {len(first)} requests the same way: {what}",
                            endpoint=describe.get("url"), error=err)
