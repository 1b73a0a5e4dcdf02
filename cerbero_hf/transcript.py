"""Transcript text <-> ``messages``: the Baize, Fauno and Cerbero formats, and tag repair.

A transcript is an optional header line followed by turns, each opened by a role tag::

    The conversation between human and AI assistant.     <- header (parsed as a system message)
    [|Human|] Hello!
    [|AI|] Hi! How can I help you?
    [|Human|]                                            <- Baize's trailing empty user tag

- Baize (English): ``[|Human|]`` / ``[|AI|]``, header, trailing empty ``[|Human|]`` (paper §3.1).
- Fauno (Baize machine-translated): the pack's ``fauno_header``, ``fauno_user_tag`` / ``fauno_assistant_tag``
  (``[|Umano|]`` / ``[|AI|]`` for Italian). Translation breaks the tags; :func:`repair_tags` fixes them.
- Cerbero: the pack's ``user_tag`` / ``assistant_tag`` (``[|Umano|]`` / ``[|Assistente|]``), no header, no
  system prompt, one turn per line ending in a newline (the released model's format, D27).

Tag repair (D15) is one case-insensitive regex that accepts spaces inside tags, wrong case,
missing or doubled bars and brackets (at least one bar or bracket on each side of the word), tags glued to
the text around them, and translated tag words (``LanguagePack.user_tag_words`` /
``assistant_tag_words``); every variant becomes the canonical tag at the start of a line followed by a
space, and each changed tag is counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

from cerbero_hf.languages import LanguagePack, load_language

BAIZE_HEADER = "The conversation between human and AI assistant."


@dataclass(frozen=True)
class TranscriptFormat:
    """How a transcript looks.

    Args:
        user_tag / assistant_tag: the role tags.
        header: the header line rendered for a conversation without a system message (None: no header).
        trailing_user: render Baize's trailing empty user tag.
        line_end: text after every turn (Cerbero ends each turn with a newline; Baize joins turns with one).
    """

    user_tag: str
    assistant_tag: str
    header: str | None = None
    trailing_user: bool = False
    line_end: bool = False


BAIZE = TranscriptFormat("[|Human|]", "[|AI|]", header=BAIZE_HEADER, trailing_user=True)


def fauno_format(pack: LanguagePack | str = "it") -> TranscriptFormat:
    pack = load_language(pack)
    return TranscriptFormat(pack.fauno_user_tag, pack.fauno_assistant_tag, header=pack.fauno_header,
                            trailing_user=True)


def cerbero_format(pack: LanguagePack | str = "it") -> TranscriptFormat:
    pack = load_language(pack)
    return TranscriptFormat(pack.user_tag, pack.assistant_tag, header=None, line_end=True)


def render(messages: list[dict], fmt: TranscriptFormat) -> str:
    """Render ``messages`` as transcript text in ``fmt``.

    A leading system message becomes the header line (else ``fmt.header``). Formats without a header
    (Cerbero) refuse system messages. ``fmt.trailing_user`` appends an empty user tag unless the last
    message already is one.
    """
    lines, msgs = [], list(messages)
    if msgs and msgs[0]["role"] == "system":
        if fmt.header is None:
            raise ValueError("this transcript format has no system prompt")
        lines.append(msgs.pop(0)["content"])
    elif fmt.header is not None:
        lines.append(fmt.header)
    if fmt.trailing_user and not (msgs and msgs[-1]["role"] == "user" and not msgs[-1]["content"]):
        msgs.append({"role": "user", "content": ""})
    for m in msgs:
        if m["role"] not in ("user", "assistant"):
            raise ValueError(f"role {m['role']!r} cannot appear after the first message")
        tag = fmt.user_tag if m["role"] == "user" else fmt.assistant_tag
        lines.append(f"{tag} {m['content']}")
    return "".join(line + "\n" for line in lines) if fmt.line_end else "\n".join(lines)


def parse(text: str, fmt: TranscriptFormat) -> list[dict]:
    """Parse transcript text whose tags are canonical (run :func:`repair_tags` first on translated text).

    Text before the first tag is the header and becomes a system message; each tag opens a turn whose
    content is stripped. Baize's trailing empty user tag is kept as an empty user message (the turn-order
    rule trims it).
    """
    splitter = _splitter(fmt.user_tag, fmt.assistant_tag)
    parts = splitter.split(text)
    messages = []
    if parts[0].strip():
        messages.append({"role": "system", "content": parts[0].strip()})
    for tag, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if tag == fmt.user_tag else "assistant", "content": content.strip()})
    return messages


@lru_cache(maxsize=16)
def _splitter(user_tag: str, assistant_tag: str) -> re.Pattern:
    return re.compile(f"({re.escape(user_tag)}|{re.escape(assistant_tag)})")


@lru_cache(maxsize=16)
def _tag_regex(user_words: tuple[str, ...], assistant_words: tuple[str, ...]) -> re.Pattern:
    words = sorted(set(user_words) | set(assistant_words), key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
    # one or more '[' / '|' (spaces allowed between), the word, one or more '|' / ']'
    return re.compile(rf"(?:[\[|][ \t]*){{1,4}}({alternatives})(?:[ \t]*[|\]]){{1,4}}", re.IGNORECASE)


@lru_cache(maxsize=16)
def _fauno_format_cached(user_tag: str, assistant_tag: str, header: str) -> TranscriptFormat:
    return TranscriptFormat(user_tag, assistant_tag, header=header, trailing_user=True)


def tag_words(pack: LanguagePack, fmt: TranscriptFormat) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The words that denote each role inside a (possibly broken) tag, lower-cased."""
    return _tag_words(fmt, pack.user_tag, pack.assistant_tag, pack.fauno_user_tag, pack.fauno_assistant_tag,
                      pack.user_tag_words, pack.assistant_tag_words)


@lru_cache(maxsize=16)
def _tag_words(fmt, user_tag, assistant_tag, fauno_user_tag, fauno_assistant_tag, user_tag_words,
               assistant_tag_words) -> tuple[tuple[str, ...], tuple[str, ...]]:
    pack = SimpleNamespace(user_tag=user_tag, assistant_tag=assistant_tag, fauno_user_tag=fauno_user_tag,
                           fauno_assistant_tag=fauno_assistant_tag, user_tag_words=user_tag_words,
                           assistant_tag_words=assistant_tag_words)

    def inner(tag: str) -> str:
        return tag.strip("[]|").strip().lower()

    user = {inner(fmt.user_tag), inner(pack.user_tag), inner(pack.fauno_user_tag), inner(BAIZE.user_tag),
            *(w.lower() for w in pack.user_tag_words)}
    assistant = {inner(fmt.assistant_tag), inner(pack.assistant_tag), inner(pack.fauno_assistant_tag),
                 inner(BAIZE.assistant_tag), *(w.lower() for w in pack.assistant_tag_words)}
    return tuple(sorted(user)), tuple(sorted(assistant - user))


def repair_tags(text: str, pack: LanguagePack | str = "it", fmt: TranscriptFormat | None = None) -> tuple[str, int]:
    """Bring every broken role tag in ``text`` to ``fmt``'s canonical form (default: Fauno's).

    Returns ``(repaired_text, n_repaired)``; a tag counts as repaired when its spelling changed or it had
    to be moved to the start of a line or separated from the text after it.
    """
    pack = load_language(pack)
    fmt = fmt or _fauno_format_cached(pack.fauno_user_tag, pack.fauno_assistant_tag, pack.fauno_header)
    user_words, assistant_words = tag_words(pack, fmt)
    user_set = set(user_words)
    count = 0

    def fix(m: re.Match) -> str:
        nonlocal count
        word = " ".join(m.group(1).lower().split())
        tag = fmt.user_tag if word in user_set else fmt.assistant_tag
        start, end, s = m.start(), m.end(), m.string
        line_before = s[s.rfind("\n", 0, start) + 1:start]
        before = "\n" if line_before.strip() else ""  # glued to text on its left: start a new line
        after = " " if end < len(s) and not s[end].isspace() else ""
        new = before + tag + after
        if new != m.group(0):
            count += 1
        return new

    repaired = _tag_regex(user_words, assistant_words).sub(fix, text)
    return repaired, count


def parse_fauno(text: str, pack: LanguagePack | str = "it") -> tuple[list[dict], int]:
    """Repair the tags of a Fauno transcript and parse it; returns ``(messages, n_tags_repaired)``."""
    pack = load_language(pack)
    fmt = _fauno_format_cached(pack.fauno_user_tag, pack.fauno_assistant_tag, pack.fauno_header)
    repaired, n = repair_tags(text, pack, fmt)
    return parse(repaired, fmt), n


def parse_baize(text: str) -> list[dict]:
    return parse(text, BAIZE)


def render_baize(messages: list[dict]) -> str:
    return render(messages, BAIZE)


def render_fauno(messages: list[dict], pack: LanguagePack | str = "it") -> str:
    return render(messages, fauno_format(pack))


def parse_cerbero(text: str, pack: LanguagePack | str = "it") -> list[dict]:
    return parse(text, cerbero_format(pack))


def render_cerbero(messages: list[dict], pack: LanguagePack | str = "it") -> str:
    return render(messages, cerbero_format(pack))
