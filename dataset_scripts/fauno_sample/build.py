"""Build the bundled Fauno-shaped sample: Italian raw transcripts with every §4 defect in known numbers.

Writes ``cerbero_hf/data/fauno_sample.jsonl`` (one ``{"id", "input"}`` object per line, ``input`` the
Fauno transcript string) and ``cerbero_hf/data/fauno_sample_expected.json`` (what the refinement must
report). Deterministic: the same seed gives the same bytes. ``bench/refine.py`` reuses :func:`build`
with :func:`bench_counts` to make a 160,000-conversation corpus at the paper's defect rates.

    python dataset_scripts/fauno_sample/build.py

Every message is written from templates and drawn without repetition (so only the injected duplicates
are duplicates). Defect kinds, one per conversation, plus broken tags sprinkled over parsed rows:

- ``schema``: ``input`` is null; ``empty``: header only, empty tags, or an empty string;
- ``turn_order``: starts with the AI, two user turns in a row, or an empty turn in the middle;
- ``trailing``: a non-empty last user turn (trimmed and counted, kept);
- ``dup_exact`` / ``dup_near`` (3 of 4 messages copied) are removed; ``dup_half`` (2 of 4) is kept;
- ``english_one`` (one untranslated English assistant reply), ``english_all`` (all four messages English);
- ``code`` (a reply that is mostly code: never foreign), ``names`` (Italian with English names: not foreign);
- ``no_header``: a transcript without the header line.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HEADER = "La conversazione tra umano e assistente AI."
USER, AI = "[|Umano|]", "[|AI|]"
ROOT = Path(__file__).resolve().parents[2]

SAMPLE_COUNTS = {"schema": 2, "empty": 6, "turn_order": 8, "trailing": 10, "dup_exact": 12, "dup_near": 6,
                 "dup_half": 3, "english_one": 15, "english_all": 3, "code": 8, "names": 8, "no_header": 5,
                 "clean": 314}
# per conversation; removals from the paper (73 empty, 225 turn order, 2,368 duplicates of ~158.4k rows)
BENCH_RATES = {"schema": 0.0001, "empty": 0.00046, "turn_order": 0.0014, "trailing": 0.02, "dup_exact": 0.01,
               "dup_near": 0.005, "dup_half": 0.002, "english_one": 0.015, "english_all": 0.003, "code": 0.08,
               "names": 0.03, "no_header": 0.005}

TOPICS = ["la dieta mediterranea", "il mal di schiena", "un curriculum vitae", "il giardino di casa",
          "un viaggio in Sicilia", "la pressione alta", "il codice Python", "una vecchia bicicletta",
          "il risparmio energetico", "la lingua inglese", "un colloquio di lavoro", "il sonno dei bambini",
          "una ricetta di pasta", "il mutuo per la casa", "la batteria del telefono", "una palestra in città",
          "il diabete di tipo due", "la caldaia a gas", "un esame universitario", "il cane di famiglia",
          "la raccolta differenziata", "un database SQL", "il vino rosso", "la febbre alta", "un corso online",
          "la stampante di casa", "il colesterolo", "una presentazione aziendale", "il lievito madre",
          "la dichiarazione dei redditi", "un acquario d'acqua dolce", "la rete Wi-Fi", "il mal di testa"]
QUALIFIERS = ["in modo semplice", "senza spendere troppo", "in poco tempo", "per la prima volta",
              "con pochi strumenti", "in modo sicuro", "durante l'inverno", "ogni giorno", "da principiante",
              "con un budget limitato", "nel fine settimana", "senza l'aiuto di un esperto", "a lungo termine"]
ASKS = ["Come posso gestire {t} {q}?", "Quali sono i consigli migliori per {t} {q}?",
        "Mi puoi spiegare come funziona {t}?", "Che cosa devo sapere su {t} se voglio iniziare {q}?",
        "Ho un problema con {t}: da dove comincio?", "Perché {t} è così importante per molte persone?",
        "Esiste un metodo pratico per migliorare {t} {q}?", "Qual è l'errore più comune con {t}?"]
FOLLOWS = ["Grazie, e se volessi farlo {q}?", "Interessante. Cosa succede se non funziona?",
           "Ci sono rischi che dovrei conoscere?", "Quanto tempo ci vuole di solito?",
           "Puoi darmi un esempio concreto?", "E quali strumenti mi servono?", "Va bene anche {q}?"]
OPENERS = ["Certo!", "Ottima domanda.", "Capisco il problema.", "Ecco alcune indicazioni.", "Volentieri."]
ADVICE = ["Il primo passo è informarsi bene su {t} e fissare un obiettivo chiaro",
          "Conviene procedere per piccoli passi e controllare i risultati {q}",
          "Molte persone trovano utile chiedere un parere a chi ha già esperienza con {t}",
          "È importante non avere fretta e annotare quello che funziona",
          "Se qualcosa non va come previsto, si può sempre ripartire dalle basi di {t}",
          "Un buon punto di partenza è confrontare due o tre soluzioni diverse {q}",
          "Ricorda che la costanza conta più della perfezione quando si parla di {t}",
          "In alcuni casi è meglio rivolgersi a un professionista, soprattutto {q}",
          "Per evitare errori, prepara una lista delle cose da fare prima di iniziare",
          "Le risorse gratuite online sono spesso sufficienti per capire {t}"]
CLOSERS = ["Spero che questi consigli ti siano utili", "Fammi sapere se hai altre domande",
           "Con un po' di pratica diventerà tutto più facile", "Buona fortuna con il tuo progetto"]
EN_ASKS = ["How can I deal with {t} in a simple way?", "What is the best way to start with {t}?",
           "Can you explain how this works for {t}?"]
EN_ANSWERS = ["Sure, this is a common question and there are a few things you can do",
              "The first step is to understand what you want to achieve with it",
              "You should take your time and check the results after each change",
              "It is also a good idea to ask someone who has done it before",
              "If it does not work, you can always go back and try a different approach",
              "There are many free resources on the web that can help you with this",
              "Make sure that you have all the tools you need before you begin"]
EN_TOPICS = ["your garden", "a job interview", "the old laptop", "your daily budget", "the new phone",
             "your morning routine", "the kitchen sink", "a small business", "the home network", "your diet"]
NAMES = ["Puoi usare Google Drive oppure Microsoft OneDrive per salvare i file di {t}.",
         "Ti consiglio di guardare i video di Khan Academy e il canale di TED su {t}.",
         "Con Visual Studio Code e GitHub Desktop puoi tenere in ordine il lavoro su {t}.",
         "Su Amazon Prime Video c'è un documentario che parla proprio di {t}."]
CODE = ["```python\ndef calcola_{v}(valori):\n    totale = 0\n    for x in valori:\n        totale += x * {n}\n"
        "    return totale / len(valori)\n\nprint(calcola_{v}([1, 2, 3]))\n```",
        "```sql\nSELECT nome, COUNT(*) AS totale_{v}\nFROM ordini\nWHERE importo > {n}\nGROUP BY nome;\n```",
        "```javascript\nconst {v} = document.querySelector('#campo');\n{v}.addEventListener('click', () => {{\n"
        "  console.log({n});\n}});\n```"]


ARTICLES = [("di il ", "del "), ("di la ", "della "), ("su il ", "sul "), ("su la ", "sulla "),
            ("di un ", "di un "), ("a il ", "al ")]


class Writer:
    """Draws unique messages from the templates (a repeated draw is retried with a counter suffix)."""

    def __init__(self, rng: random.Random):
        self.rng, self.seen = rng, {}

    def unique(self, text: str) -> str:
        k = self.seen.get(text, 0) + 1
        self.seen[text] = k
        return text if k == 1 else f"{text} ({k})"

    def fill(self, s: str) -> str:
        s = s.format(t=self.rng.choice(TOPICS), q=self.rng.choice(QUALIFIERS))
        for wrong, right in ARTICLES:
            s = s.replace(wrong, right)
        return s

    def user(self, first: bool) -> str:
        return self.unique(self.fill(self.rng.choice(ASKS if first else FOLLOWS)))

    def assistant(self) -> str:
        r = self.rng
        parts = [r.choice(OPENERS)] + [self.fill(a) + "." for a in r.sample(ADVICE, r.randint(2, 4))]
        return self.unique(" ".join(parts + [r.choice(CLOSERS) + "."]))

    def english(self, user: bool) -> str:
        r = self.rng
        if user:
            return self.unique(r.choice(EN_ASKS).format(t=r.choice(EN_TOPICS)))
        return self.unique(" ".join(s + "." for s in r.sample(EN_ANSWERS, r.randint(2, 4))))

    def code(self) -> str:
        r = self.rng
        snippet = r.choice(CODE).format(v=r.choice(["media", "valore", "somma", "dati"]), n=r.randint(2, 999))
        return self.unique("Ecco un esempio:\n" + snippet)

    def names(self) -> str:
        return self.unique(self.fill(self.rng.choice(NAMES)) + " " + self.fill(self.rng.choice(ADVICE)) + ".")

    def conversation(self, exchanges: int) -> list[tuple[str, str]]:
        turns = []
        for i in range(exchanges):
            turns += [("user", self.user(i == 0)), ("assistant", self.assistant())]
        return turns


def broken_tag(role: str, rng: random.Random) -> tuple[str, str]:
    """A machine-translation breakage of a tag: ``(tag_text, kind)``; kinds ``glued_*`` change the joins."""
    word = "Umano" if role == "user" else "AI"
    kind = rng.choice(["space", "case", "missing", "doubled", "translated", "glued_left", "glued_right"])
    if kind == "space":
        return f"[| {word} |]", kind
    if kind == "case":
        return f"[|{rng.choice([v for v in (word.lower(), word.upper(), word.swapcase()) if v != word])}|]", kind
    if kind == "missing":
        return rng.choice([f"[{word}]", f"[|{word}]", f"[{word}|]", f"|{word}|"]), kind
    if kind == "doubled":
        return rng.choice([f"[[|{word}|]]", f"[||{word}||]"]), kind
    if kind == "translated":
        words = ["Essere umano", "Utente", "Human", "Persona"] if role == "user" else \
            ["IA", "Assistente", "Intelligenza artificiale", "Assistente AI"]
        return f"[|{rng.choice(words)}|]", kind
    return (USER if role == "user" else AI), kind


def render(turns, rng, header=True, tag_rate=0.0, trailing=True) -> tuple[str, int]:
    """A Fauno transcript of ``turns`` with broken tags at ``tag_rate``; returns ``(text, n_broken)``."""
    text, broken = (HEADER if header else ""), 0
    all_turns = list(turns) + ([("user", "")] if trailing else [])
    for i, (role, content) in enumerate(all_turns):
        last = i == len(all_turns) - 1
        tag, kind = (USER if role == "user" else AI), None
        if tag_rate and rng.random() < tag_rate:
            tag, kind = broken_tag(role, rng)
            if (kind == "glued_right" and (last or not content)) or (kind == "glued_left" and not text):
                tag, kind = (USER if role == "user" else AI), None  # nothing to glue to
            broken += kind is not None
        sep = "" if (kind == "glued_left" or not text) else "\n"
        gap = "" if kind == "glued_right" else " "
        text += f"{sep}{tag}{gap}{content}"
    return text, broken


def build(counts: dict, seed: int = 0, tag_rate: float = 0.12) -> tuple[list[dict], dict]:
    """Rows ``{"id", "input"}`` with ``counts`` conversations of each kind, and the expected report."""
    rng = random.Random(seed)
    w = Writer(rng)
    removed = {"schema": 0, "empty": 0, "turn_order": 0, "duplicates": 0, "language": 0}
    changed = {"tag_repair": 0, "system_prompt": 0, "turn_order": 0, "language": 0}
    drop_message = {"removed": 0, "changed": 0}
    specs = []  # (kind, turns or raw) in random order; duplicates are placed after their source below
    for kind, n in counts.items():
        specs += [kind] * (n if not kind.startswith("dup_") else 0)
    rng.shuffle(specs)
    rows, sources = [], []
    for kind in specs:
        header, text = True, None
        if kind == "schema":
            rows.append({"input": None})
            removed["schema"] += 1
            continue
        if kind == "empty":
            text = rng.choice([HEADER, f"{HEADER}\n{USER} \n{AI} \n{USER} ", "", f"{HEADER}\n{USER}   \n{AI}\n"])
            removed["empty"] += 1
            rows.append({"input": text})
            continue
        if kind == "turn_order":
            turns = w.conversation(2)
            bad = rng.choice(["ai_first", "double_user", "empty_middle"])
            turns = turns[1:] if bad == "ai_first" else turns
            if bad == "double_user":
                turns.insert(1, ("user", w.user(False)))
            if bad == "empty_middle":
                turns[1] = ("assistant", "")
            text, nb = render(turns, rng, tag_rate=0 if bad == "empty_middle" else tag_rate)
            removed["turn_order"] += 1
            changed["system_prompt"] += 1
            changed["tag_repair"] += nb
            rows.append({"input": text})
            continue
        if kind == "trailing":
            turns = w.conversation(rng.randint(1, 3)) + [("user", w.user(False))]
            text, nb = render(turns, rng, tag_rate=tag_rate, trailing=False)
            changed["turn_order"] += 1
        elif kind in ("english_one", "english_all"):
            if kind == "english_one":
                turns = w.conversation(rng.randint(2, 3))
                k = rng.randrange(len(turns) // 2) * 2 + 1
                turns[k] = ("assistant", w.english(user=False))
                changed["language"] += 1
                drop_message["changed"] += 2
            else:
                turns = [(r, w.english(user=r == "user")) for r in ("user", "assistant") * 2]
                changed["language"] += 4
                drop_message["changed"] += 4
                drop_message["removed"] += 1
            text, nb = render(turns, rng, tag_rate=tag_rate)
        else:  # clean, code, names, no_header: kept, and possible duplicate sources
            turns = w.conversation(rng.randint(1, 4) if kind == "clean" else 2)
            if kind == "code":
                turns[1] = ("assistant", w.code())
            if kind == "names":
                turns[1] = ("assistant", w.names())
            header = kind != "no_header"
            text, nb = render(turns, rng, header=header, tag_rate=tag_rate)
            if len(turns) == 4:
                sources.append((len(rows), turns))
        changed["system_prompt"] += header
        changed["tag_repair"] += nb
        rows.append({"input": text})
    # duplicates, each inserted at a random place after its source (the first copy must survive)
    dups = [k for k in ("dup_exact", "dup_near", "dup_half") for _ in range(counts.get(k, 0))]
    placed = []
    for kind in dups:
        src_index, turns = rng.choice(sources)
        turns = list(turns)
        if kind == "dup_near":
            turns[3] = ("assistant", w.assistant())
        if kind == "dup_half":
            turns[2], turns[3] = ("user", w.user(False)), ("assistant", w.assistant())
        text, nb = render(turns, rng, tag_rate=tag_rate)
        placed.append((rng.randint(src_index + 1, len(rows)), text))
        removed["duplicates"] += kind != "dup_half"
        changed["system_prompt"] += 1
        changed["tag_repair"] += nb
    for pos, text in sorted(placed, key=lambda p: p[0], reverse=True):
        rows.insert(pos, {"input": text})
    rows = [{"id": f"fauno-sample-{i:06d}", **r} for i, r in enumerate(rows)]
    expected = {"rows": len(rows), "kept": len(rows) - sum(removed.values()), "removed": removed,
                "changed": changed, "drop_message": drop_message,
                "drop_conversation": {"removed": counts.get("english_one", 0) + counts.get("english_all", 0)}}
    return rows, expected


def bench_counts(n: int) -> dict:
    counts = {k: round(v * n) for k, v in BENCH_RATES.items()}
    counts["clean"] = n - sum(counts.values())
    return counts


def main() -> None:
    rows, expected = build(SAMPLE_COUNTS, seed=0)
    data = ROOT / "cerbero_hf" / "data"
    with (data / "fauno_sample.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (data / "fauno_sample_expected.json").write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} rows; expected: {expected}")


if __name__ == "__main__":
    main()
