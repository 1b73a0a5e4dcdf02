"""Per-sentence language check of messages (the refinement's language step, paper §3.1).

A message is *foreign* (e.g. an untranslated English message in an Italian corpus) when more than half
of its characters are in sentences detected as English. Three cheap parts keep this fast:

1. :func:`split_sentences`: a regex sentence splitter that ships its rules (line breaks, then ``.!?…``
   followed by a space and a capital, digit or quote, except after common abbreviations). NLTK Punkt's
   pretrained data cannot be downloaded here and pysbd splits only ~550 sentences/s.
2. :func:`first_pass`: the language pack's function words against English ones
   (``languages.ENGLISH_FUNCTION_WORDS``). It settles whole messages where the pack's function words
   outnumber English ones 4 to 1, then clear sentences, and sends only the uncertain sentences to Lingua.
3. Lingua (``lingua-language-detector``) restricted to the pack language and English, built once per
   process, on the uncertain sentences of a whole batch at once.

:func:`code_share` is a heuristic code detector: messages that are mostly code are never foreign, and
fenced or code-looking lines are left out of the sentence check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from cerbero_hf.languages import ENGLISH_FUNCTION_WORDS, LanguagePack, load_language

ENGLISH = "en"
_WORD = re.compile(r"[^\W\d_]+")
_ABBREV = ("e.g", "i.e", "etc", "ecc", "es", "sig", "sigg", "dott", "dr", "prof", "ing", "avv", "mr", "mrs",
           "ms", "vs", "cfr", "pag", "p", "n", "nr", "art", "no", "fig", "st")
_SENT_END = re.compile(r"(?<=[.!?…])[\"”»')\]]*\s+(?=[\"“«'(\[¿¡]?[^\W_a-z])")
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_CODE_LINE = re.compile(
    r"^\s*(?:[#/]{1,2}\s*include|import |from \S+ import|def |class |return\b|public |private |"
    r"function\b|var |let |const |#!|<\?php|<[a-z]+[ >/]|\$ |>>> |SELECT |INSERT |"
    r"[{}()\[\];]+\s*$)|[;{]\s*$|^\s{4,}\S|\w+\([^)]*\)\s*[;{:]?\s*$|\w\s*(?:==|!=|\+=|=>|->|:=)\s*\S",
    re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with regex rules (line breaks, final punctuation, abbreviations)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        start = 0
        for m in _SENT_END.finditer(line):
            last = line[start:m.start()].rsplit(None, 1)
            word = last[-1].rstrip(".").lower() if last else ""
            if word in _ABBREV or (len(word) == 1 and word.isalpha()):
                continue  # "ecc. Poi", "p. es.", an initial "J. Smith"
            out.append(line[start:m.start()].strip())
            start = m.end()
        tail = line[start:].strip()
        if tail:
            out.append(tail)
    return out


_CALL = re.compile(r"\w\(")


def _may_hold_code(text: str) -> bool:
    """Cheap pre-check: without any of these characters :func:`code_share` is 0."""
    return (any(c in text for c in "{};=<>`$#") or "\n    " in text or "\n\t" in text or text.startswith(("    ", "\t"))
            or ("(" in text and _CALL.search(text) is not None))


def code_share(text: str) -> float:
    """Share of the characters of ``text`` in fenced code blocks or code-looking lines (0..1)."""
    if not text:
        return 0.0
    code = sum(len(m.group(0)) for m in _FENCE.finditer(text))
    rest = _FENCE.sub("", text)
    code += sum(len(line) + 1 for line in rest.splitlines() if _CODE_LINE.search(line))
    return min(1.0, code / len(text))


def prose_lines(text: str) -> str:
    """``text`` without fenced code blocks and code-looking lines."""
    rest = _FENCE.sub("\n", text)
    return "\n".join(line for line in rest.splitlines() if not _CODE_LINE.search(line))


@lru_cache(maxsize=8)
def _word_sets(pack_words: tuple[str, ...]) -> tuple[frozenset, frozenset]:
    own, en = frozenset(pack_words), frozenset(ENGLISH_FUNCTION_WORDS)
    both = own & en  # e.g. Italian "i" (article) and English "I": no evidence either way
    return own - both, en - both


def count_function_words(text: str, pack: LanguagePack) -> tuple[int, int, int]:
    """Return ``(n_pack_words, n_english_words, n_words)`` for ``text``."""
    own, en = _word_sets(pack.function_words)
    words = _WORD.findall(text.lower())
    n_own = n_en = 0
    for w in words:
        if w in own:
            n_own += 1
        elif w in en:
            n_en += 1
    return n_own, n_en, len(words)


def first_pass(sentence: str, pack: LanguagePack) -> str | None:
    """Cheap verdict for one sentence: ``pack.code``, ``"en"`` or None (uncertain: ask Lingua)."""
    n_own, n_en, n = count_function_words(sentence, pack)
    return _verdict(n_own, n_en, n, pack.code)


def _verdict(n_own: int, n_en: int, n: int, code: str) -> str | None:
    if n < 3:
        return None
    if n_own >= 2 and n_own >= 3 * n_en:
        return code
    if n_en >= 2 and n_en >= 3 * n_own:
        return ENGLISH
    return None


@lru_cache(maxsize=4)
def _detector(lingua_name: str):
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(getattr(Language, lingua_name), Language.ENGLISH).build()


def lingua_detect(sentences: list[str], pack: LanguagePack) -> list[str | None]:
    """Lingua (pack language vs English) on ``sentences``; built once per process."""
    if not sentences:
        return []
    detector = _detector(pack.lingua_name)
    out = []
    # one sentence at a time: Lingua's own thread pool deadlocks in forked Dataset.map(num_proc) workers,
    # and parallelism comes from num_proc anyway
    for sentence in sentences:
        lang = detector.detect_language_of(sentence)
        out.append(None if lang is None else (ENGLISH if lang.name == "ENGLISH" else pack.code))
    return out


@dataclass
class Verdict:
    """Language verdict for one message: ``foreign`` when ``english_share`` > threshold and not code."""

    foreign: bool
    english_share: float
    code: bool
    lingua_sentences: int = 0


class LanguageChecker:
    """Check many messages at once (first pass, then one Lingua call for the uncertain sentences).

    Args:
        language: pack code or :class:`LanguagePack`.
        threshold: a message is foreign when more than this share of its characters is English (default 0.5).
        code_threshold: messages with more than this share of code are never foreign.
        use_lingua: False settles uncertain sentences as the pack language (first pass only).
    """

    def __init__(self, language: LanguagePack | str = "it", threshold: float = 0.5, code_threshold: float = 0.5,
                 use_lingua: bool = True):
        self.pack = load_language(language)
        self.threshold, self.code_threshold, self.use_lingua = threshold, code_threshold, use_lingua

    def check(self, texts: list[str]) -> list[Verdict]:
        pack = self.pack
        plans: list[tuple[bool, list]] = []  # per message: (code, [(chars, verdict-or-index)])
        pending: list[str] = []
        for text in texts:
            prose = text
            if _may_hold_code(text):  # only then is the (slower) code detector worth running
                if code_share(text) > self.code_threshold:
                    plans.append((True, []))
                    continue
                prose = prose_lines(text)
            n_own, n_en, n = count_function_words(prose, pack)
            # whole-message first pass: the pack's function words outnumber English ones 4 to 1, so English
            # sentences cannot hold half of the text: no split needed (the common case)
            if n_own >= 3 and 4 * n_en <= n_own:
                plans.append((False, []))
                continue
            parts: list[tuple[int, str | int | None]] = []
            for sent in split_sentences(prose):
                v: str | int | None = first_pass(sent, pack)
                if v is None and self.use_lingua and _WORD.search(sent):
                    pending.append(sent)
                    v = len(pending) - 1
                parts.append((len(sent), v))
            plans.append((False, parts))
        detected = lingua_detect(pending, pack) if pending else []
        out = []
        for code, parts in plans:
            total = english = asked = 0
            for chars, v in parts:
                if isinstance(v, int):
                    v, asked = detected[v], asked + 1
                total += chars
                english += chars if v == ENGLISH else 0
            share = english / total if total else 0.0
            out.append(Verdict(foreign=not code and share > self.threshold, english_share=round(share, 3), code=code,
                               lingua_sentences=asked))
        return out
