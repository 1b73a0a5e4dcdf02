"""Transcript formats (Baize, Fauno, Cerbero): parsing, rendering, round trips and tag repair (D15)."""

import pytest

from cerbero_hf.languages import ITALIAN
from cerbero_hf.transcript import (
    BAIZE,
    BAIZE_HEADER,
    cerbero_format,
    fauno_format,
    parse,
    parse_baize,
    parse_cerbero,
    parse_fauno,
    render,
    render_baize,
    render_cerbero,
    render_fauno,
    repair_tags,
)

CHAT = [{"role": "user", "content": "Ciao, come stai?"},
        {"role": "assistant", "content": "Bene, grazie!\nE tu?"},
        {"role": "user", "content": "Tutto bene."},
        {"role": "assistant", "content": "Mi fa piacere."}]


def test_baize_render_is_the_preprocess_format():
    text = render_baize(CHAT[:2])
    assert text == (f"{BAIZE_HEADER}\n[|Human|] Ciao, come stai?\n[|AI|] Bene, grazie!\nE tu?\n[|Human|] ")


@pytest.mark.parametrize("fmt", [BAIZE, fauno_format(ITALIAN)], ids=["baize", "fauno"])
def test_header_formats_round_trip(fmt):
    text = render(CHAT, fmt)
    parsed = parse(text, fmt)
    assert parsed[0] == {"role": "system", "content": fmt.header}
    assert parsed[1:-1] == CHAT
    assert parsed[-1] == {"role": "user", "content": ""}  # the trailing empty user tag
    assert render(parsed, fmt) == text


def test_fauno_uses_the_pack_tags_and_header():
    text = render_fauno(CHAT[:2], ITALIAN)
    assert text.startswith(ITALIAN.fauno_header + "\n[|Umano|] Ciao")
    assert "\n[|AI|] Bene" in text and text.endswith("\n[|Umano|] ")
    messages, repaired = parse_fauno(text, ITALIAN)
    assert repaired == 0 and messages[1:3] == CHAT[:2]


def test_cerbero_round_trip_and_no_system_prompt():
    text = render_cerbero(CHAT, ITALIAN)
    assert text == ("[|Umano|] Ciao, come stai?\n[|Assistente|] Bene, grazie!\nE tu?\n"
                    "[|Umano|] Tutto bene.\n[|Assistente|] Mi fa piacere.\n")
    assert parse_cerbero(text, ITALIAN) == CHAT
    assert render(parse(text, cerbero_format()), cerbero_format()) == text
    with pytest.raises(ValueError):
        render_cerbero([{"role": "system", "content": "Sii gentile."}] + CHAT)


def test_baize_parse_of_a_real_shaped_transcript():
    text = f"{BAIZE_HEADER}\n[|Human|] Hello!\n[|AI|] Hi! How can I help you?\n[|Human|] "
    assert parse_baize(text) == [{"role": "system", "content": BAIZE_HEADER},
                                 {"role": "user", "content": "Hello!"},
                                 {"role": "assistant", "content": "Hi! How can I help you?"},
                                 {"role": "user", "content": ""}]


@pytest.mark.parametrize("broken, role", [
    ("[| Umano |]", "user"), ("[|umano|]", "user"), ("[|UMANO|]", "user"), ("[Umano]", "user"),
    ("[|Umano]", "user"), ("[Umano|]", "user"), ("|Umano|", "user"), ("[[|Umano|]]", "user"),
    ("[||Umano||]", "user"), ("[|Essere umano|]", "user"), ("[| essere   UMANO |]", "user"), ("[|Human|]", "user"),
    ("[|Utente|]", "user"), ("[| ai |]", "assistant"), ("[AI]", "assistant"), ("[|IA|]", "assistant"),
    ("[|Assistente|]", "assistant"), ("[|Intelligenza artificiale|]", "assistant"), ("[|Assistente AI|]", "assistant"),
    ("[[AI]]", "assistant"),
])
def test_every_broken_tag_kind_is_repaired_and_counted(broken, role):
    text = f"{ITALIAN.fauno_header}\n{broken} Testo del messaggio."
    repaired, n = repair_tags(text, ITALIAN)
    tag = "[|Umano|]" if role == "user" else "[|AI|]"
    assert (repaired, n) == (f"{ITALIAN.fauno_header}\n{tag} Testo del messaggio.", 1)


def test_glued_tags_are_moved_to_their_own_line():
    text = f"{ITALIAN.fauno_header}[|Umano|]Ciao![|AI|]Salve, come posso aiutarti?\n[|Umano|] "
    messages, n = parse_fauno(text, ITALIAN)
    assert n == 2  # the final [|Umano|] was already canonical
    assert [m["content"] for m in messages] == [ITALIAN.fauno_header, "Ciao!", "Salve, come posso aiutarti?", ""]


def test_canonical_tags_and_plain_words_are_left_alone():
    text = render_fauno(CHAT, ITALIAN).replace("Tutto bene.", "Un essere umano e una AI parlano di [1] e |x|.")
    assert repair_tags(text, ITALIAN) == (text, 0)


def test_repair_then_parse_gives_the_messages_back():
    clean = render_fauno(CHAT, ITALIAN)
    broken = (clean.replace("[|Umano|] Ciao", "[| umano |]Ciao").replace("\n[|AI|] Mi fa", " [[|IA|]] Mi fa")
              .replace("[|AI|] Bene", "[Assistente] Bene"))
    messages, n = parse_fauno(broken, ITALIAN)
    assert n == 3 and messages == parse_fauno(clean, ITALIAN)[0]
