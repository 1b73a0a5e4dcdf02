"""Scores for the paper's evaluation (§4.2): SQuAD EM/F1 and label parsing + F1.

SQuAD: the v1.1 metric (token-overlap F1 and exact match, max over the gold answers) with two
normalisers: :func:`normalize_squad` is the official one (lower case, drop ASCII punctuation, drop the
English articles *a, an, the*, collapse spaces) and :func:`normalize_italian` the language-aware one
(articles from the evaluation language file, elided forms such as ``l'`` and ``un'`` included, and
Unicode punctuation such as ``«»``, ``’`` and ``…``). "l'Italia" and "Italia" match under the second,
not under the first.

Classification (benchita's protocol): :func:`parse_label` maps a model answer to a label word by
exact match, then prefix match in either direction from the longest label to the shortest, otherwise
``<UNKNOWN>``; :func:`classification_scores` reports accuracy, macro F1 (the headline) and weighted F1
over the task's label words, so an unknown answer counts as wrong without becoming a class.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

UNKNOWN = "<UNKNOWN>"
ITALIAN_ARTICLES = ("il", "lo", "la", "i", "gli", "le", "l'", "un", "uno", "una", "un'")
_APOSTROPHES = "'’‘ʼ`´"
_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_squad(text: str) -> str:
    """The official SQuAD v1.1 normaliser (English articles)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_EN_ARTICLES.sub(" ", text).split())


def normalize_italian(text: str, articles: Iterable[str] = ITALIAN_ARTICLES) -> str:
    """SQuAD normalisation with the language's articles (elided ones included) and Unicode punctuation.

    Steps: NFKC + lower case; typographic apostrophes become ``'``; elided articles (``l'``, ``un'``)
    are removed where they start a word; any other apostrophe becomes a space (``dell'arte`` ->
    ``dell arte``); Unicode punctuation is dropped; whole-word articles are dropped; spaces collapse.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    for ch in _APOSTROPHES:
        text = text.replace(ch, "'")
    elided = [re.escape(a[:-1]) for a in articles if a.endswith("'")]
    words = [re.escape(a) for a in articles if not a.endswith("'")]
    if elided:
        text = re.sub(r"(?<!\w)(?:" + "|".join(elided) + r")'", " ", text)
    text = text.replace("'", " ")
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P") and ch not in _PUNCT)
    if words:
        text = re.sub(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", " ", text)
    return " ".join(text.split())


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: Sequence[str], normalize=normalize_squad) -> tuple[float, float]:
    """(exact match, F1) of one prediction, each the max over the gold answers, in [0, 1]."""
    if not golds:
        raise ValueError("a SQuAD example needs at least one gold answer")
    pred = normalize(prediction)
    em = max(float(pred == normalize(g)) for g in golds)
    f1 = max(_f1(pred.split(), normalize(g).split()) for g in golds)
    return em, f1


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]],
                  articles: Iterable[str] = ITALIAN_ARTICLES) -> dict[str, float]:
    """Corpus EM/F1 in percent: ``exact_match``/``f1`` (language-aware) and ``*_squad`` (official)."""
    articles = tuple(articles)
    out = {"exact_match": 0.0, "f1": 0.0, "exact_match_squad": 0.0, "f1_squad": 0.0}
    for pred, gold in zip(predictions, golds, strict=True):
        em, f1 = squad_scores(pred, gold, lambda s: normalize_italian(s, articles))
        em_s, f1_s = squad_scores(pred, gold, normalize_squad)
        out["exact_match"] += em
        out["f1"] += f1
        out["exact_match_squad"] += em_s
        out["f1_squad"] += f1_s
    n = max(len(predictions), 1)
    return {k: 100.0 * v / n for k, v in out.items()}


def parse_label(answer: str, labels: Sequence[str], unknown: str = UNKNOWN) -> str:
    """Map a model answer to one of ``labels`` (benchita's rule).

    Exact match first; then, from the longest label to the shortest, a label that the answer starts
    with or that starts with the answer. An empty answer is ``unknown`` (benchita would have matched
    every label, since every string starts with ``""``). Matching is case-sensitive, as in benchita.
    """
    text = answer.strip()
    if text in labels:
        return text
    if not text:
        return unknown
    for label in sorted(labels, key=len, reverse=True):
        if text.startswith(label) or label.startswith(text):
            return label
    return unknown


def classification_scores(predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro F1 (headline) and weighted F1 in percent, over ``labels`` (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(predictions) != len(golds):
        raise ValueError("predictions and golds differ in length")
    if not golds:
        return {"accuracy": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0}
    labels = list(labels)
    return {
        "accuracy": 100.0 * accuracy_score(golds, predictions),
        "macro_f1": 100.0 * f1_score(golds, predictions, labels=labels, average="macro", zero_division=0),
        "weighted_f1": 100.0 * f1_score(golds, predictions, labels=labels, average="weighted", zero_division=0),
    }
