"""Language packs: everything language-specific lives here, nothing Italian is hard-coded elsewhere.

A :class:`LanguagePack` holds the role tags of the transcript formats, the self-chat prompts,
the language-ID settings and the default model ids. Italian (``"it"``) is built in; other
languages load from a YAML file with the same field names (see ``load_language``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cerbero_hf.errors import InputError


@dataclass(frozen=True)
class LanguagePack:
    """Language-specific settings.

    Tags:
        user_tag / assistant_tag: the Cerbero training format (``[|Umano|]`` / ``[|Assistente|]``).
        fauno_user_tag / fauno_assistant_tag: the translated-Baize format (``[|Umano|]`` / ``[|AI|]``).
        fauno_header: the header line of a translated Baize transcript.
        user_tag_words / assistant_tag_words: words machine translation puts inside broken tags;
            tag repair maps each to its role (case-insensitive).
    Self-chat (D3):
        selfchat_system_user / selfchat_system_assistant: system prompts asking for exactly one
            next message of that role; ``{user_tag}`` / ``{assistant_tag}`` are filled in.
    Language ID (D18):
        lingua_name: the ``lingua.Language`` member name; function_words: frequent short words of
            the language, used by the cheap first-pass detector.
    Models: embedder (D8), mlm (D21).

    Examples:
        >>> from cerbero_hf import load_language
        >>> pack = load_language("it")
        >>> pack.user_tag, pack.assistant_tag, pack.mlm
        ('[|Umano|]', '[|Assistente|]', 'dbmdz/bert-base-italian-xxl-cased')
    """

    code: str
    name: str
    user_tag: str
    assistant_tag: str
    fauno_user_tag: str
    fauno_assistant_tag: str
    fauno_header: str
    user_tag_words: tuple[str, ...]
    assistant_tag_words: tuple[str, ...]
    selfchat_system_user: str
    selfchat_system_assistant: str
    lingua_name: str
    function_words: tuple[str, ...]
    embedder: str = "sentence-transformers/distiluse-base-multilingual-cased-v2"
    mlm: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


ENGLISH_FUNCTION_WORDS = (
    "the", "and", "is", "are", "of", "to", "in", "that", "it", "for", "you", "with", "this", "was",
    "on", "be", "have", "not", "what", "can", "do", "how", "your", "my", "an", "as", "at", "by",
    "or", "from", "but", "if", "would", "there", "they", "we", "will", "about", "which", "i",
)

ITALIAN = LanguagePack(
    code="it",
    name="Italian",
    user_tag="[|Umano|]",
    assistant_tag="[|Assistente|]",
    fauno_user_tag="[|Umano|]",
    fauno_assistant_tag="[|AI|]",
    fauno_header="La conversazione tra umano e assistente AI.",
    user_tag_words=("umano", "human", "uomo", "essere umano", "persona", "utente"),
    assistant_tag_words=("ai", "ia", "assistente", "intelligenza artificiale", "assistente ai", "assistente ia"),
    selfchat_system_user=(
        "Stai scrivendo una conversazione in italiano tra un umano e un assistente AI. "
        "I messaggi dell'umano iniziano con {user_tag}, quelli dell'assistente con {assistant_tag}. "
        "Scrivi soltanto il prossimo messaggio dell'umano: una domanda o una richiesta di approfondimento "
        "coerente con la conversazione. Scrivi un solo messaggio, senza etichette."
    ),
    selfchat_system_assistant=(
        "Stai scrivendo una conversazione in italiano tra un umano e un assistente AI. "
        "I messaggi dell'umano iniziano con {user_tag}, quelli dell'assistente con {assistant_tag}. "
        "Scrivi soltanto il prossimo messaggio dell'assistente: una risposta utile, corretta e dettagliata, "
        "senza fare domande. Scrivi un solo messaggio, senza etichette."
    ),
    lingua_name="ITALIAN",
    function_words=(
        "il", "lo", "la", "i", "gli", "le", "un", "uno", "una", "di", "del", "della", "dei", "delle",
        "che", "e", "è", "non", "per", "con", "sono", "come", "anche", "più", "questo", "questa", "nel",
        "nella", "al", "alla", "da", "si", "ci", "mi", "ti", "ma", "se", "perché", "cosa", "molto",
        "sul", "sulla", "degli", "hai", "ho", "può", "puoi", "essere", "quando", "dove", "quale",
    ),
    embedder="sentence-transformers/distiluse-base-multilingual-cased-v2",
    mlm="dbmdz/bert-base-italian-xxl-cased",
)

BUILTIN = {"it": ITALIAN}


def load_language(spec: str | Path | LanguagePack = "it") -> LanguagePack:
    """Return a built-in pack by code (``"it"``) or load one from a YAML file.

    The YAML holds the dataclass field names; lists become tuples. Unknown keys are an error.

    Examples:
        >>> from cerbero_hf import load_language
        >>> load_language("it").name
        'Italian'
        >>> load_language("xx")
        Traceback (most recent call last):
        cerbero_hf.errors.InputError: unknown language 'xx': not built in (it) and no such YAML file
    """
    if isinstance(spec, LanguagePack):
        return spec
    if str(spec) in BUILTIN:
        return BUILTIN[str(spec)]
    path = Path(spec)
    if not path.exists():
        raise InputError(f"unknown language {str(spec)!r}: not built in ({', '.join(BUILTIN)}) and no such YAML file")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse language pack: {err}".splitlines()[0], file=str(path)) from None
    known = {f.name for f in fields(LanguagePack)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown language-pack field(s): {', '.join(unknown)}", file=str(path), column=unknown[0])
    required = {"code", "name", "user_tag", "assistant_tag", "fauno_user_tag", "fauno_assistant_tag", "fauno_header",
                "user_tag_words", "assistant_tag_words", "selfchat_system_user", "selfchat_system_assistant",
                "lingua_name", "function_words"}
    missing = sorted(required - set(data))
    if missing:
        raise InputError(f"missing language-pack field(s): {', '.join(missing)}", file=str(path), column=missing[0])
    for key in ("user_tag_words", "assistant_tag_words", "function_words"):
        data[key] = tuple(data[key])
    return LanguagePack(**data)
