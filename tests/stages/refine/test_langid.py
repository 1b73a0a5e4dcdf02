"""Language check: sentence splitter, code detector, first pass vs Lingua on a labelled sample."""

import pytest

from cerbero_hf.languages import ITALIAN
from cerbero_hf.stages.refine.langid import LanguageChecker, code_share, first_pass, lingua_detect, split_sentences

# A labelled sample we wrote: (sentence, language). Mixed lengths, names, numbers and questions.
LABELLED = [
    ("Il medico mi ha consigliato di fare una passeggiata ogni giorno.", "it"),
    ("Come posso installare Python sul mio computer con Windows?", "it"),
    ("La ricetta della carbonara non prevede la panna.", "it"),
    ("Non so se il treno per Milano parte in orario.", "it"),
    ("Puoi usare Google Drive per salvare i documenti della scuola.", "it"),
    ("Ho provato a riavviare il router ma la connessione non torna.", "it"),
    ("Quali sono gli effetti collaterali di questo farmaco?", "it"),
    ("Secondo me è meglio partire presto la mattina.", "it"),
    ("Il file di configurazione si trova nella cartella principale del progetto.", "it"),
    ("Mi piacerebbe imparare a suonare la chitarra.", "it"),
    ("Grazie mille per l'aiuto!", "it"),
    ("Perfetto, funziona.", "it"),
    ("Buongiorno a tutti.", "it"),
    ("Certamente, ecco alcuni suggerimenti utili.", "it"),
    ("Lo stack overflow si verifica quando la ricorsione è troppo profonda.", "it"),
    ("The doctor told me to take a walk every day.", "en"),
    ("How can I install Python on my Windows computer?", "en"),
    ("There is no cream in the original carbonara recipe.", "en"),
    ("I am not sure if the train to Milan is on time.", "en"),
    ("You can use Google Drive to store your school documents.", "en"),
    ("I tried to restart the router but the connection is still down.", "en"),
    ("What are the side effects of this medication?", "en"),
    ("In my opinion it is better to leave early in the morning.", "en"),
    ("The configuration file is in the main folder of the project.", "en"),
    ("I would like to learn how to play the guitar.", "en"),
    ("Thank you so much for your help!", "en"),
    ("Sounds great, thanks.", "en"),
    ("Good morning everyone.", "en"),
    ("Sure, here are some useful suggestions.", "en"),
    ("A stack overflow happens when the recursion is too deep.", "en"),
]


def test_splitter_ships_its_rules():
    text = ("Ciao, come stai? Io sto bene, ecc. Poi vado al mare. Il prezzo è 3.50 euro. "
            "Il dott. Rossi arriva alle 10.\nSeconda riga senza punto\n\n- un elenco! Fine.")
    assert split_sentences(text) == ["Ciao, come stai?", "Io sto bene, ecc. Poi vado al mare.",
                                     "Il prezzo è 3.50 euro.", "Il dott. Rossi arriva alle 10.",
                                     "Seconda riga senza punto", "- un elenco!", "Fine."]


def test_first_pass_and_lingua_agree_on_the_labelled_sample():
    sentences = [s for s, _ in LABELLED]
    labels = [lang for _, lang in LABELLED]
    cheap = [first_pass(s, ITALIAN) for s in sentences]
    lingua = lingua_detect(sentences, ITALIAN)
    settled = [(c, lab, li) for c, lab, li in zip(cheap, labels, lingua) if c is not None]
    # the first pass settles most sentences and is never wrong where it decides
    assert len(settled) >= 0.6 * len(LABELLED)
    assert all(c == lab for c, lab, _ in settled)
    # where it decides, Lingua agrees with it (names such as "Python ... Windows" can fool Lingua on a short
    # Italian sentence: that is where the function words help); Lingua alone gets nearly all right
    agree = sum(c == li for c, _, li in settled)
    assert agree >= 0.9 * len(settled)
    assert sum(li == lab for li, lab in zip(lingua, labels)) >= len(LABELLED) - 2
    # the uncertain ones are short sentences: exactly the ones sent to Lingua
    assert all(len(s.split()) <= 6 for s, c in zip(sentences, cheap) if c is None)


def test_code_detector():
    code = "```python\nimport os\nfor f in os.listdir('.'):\n    print(f)\n```"
    assert code_share(code) > 0.9
    assert code_share("Ecco come fare:\n" + code) > 0.5
    assert code_share("Per leggere un file in Python si usa la funzione open con la modalità di lettura.") == 0.0


def test_message_verdicts():
    checker = LanguageChecker("it")
    english = "How can I fix this error? I tried everything but it does not work. Can you help me with it?"
    italian = "Come posso risolvere questo errore? Ho provato di tutto ma non funziona."
    mixed_minor = italian + " Thank you."
    mostly_english = "Ecco la risposta. " + english
    code_en = "You can do it like this:\n```python\nimport os\nfor name in os.listdir('.'):\n    print(name)\n```"
    names = "Ho usato Visual Studio Code e GitHub Desktop per il progetto, con Stack Overflow come guida."
    v = checker.check([english, italian, mixed_minor, mostly_english, code_en, names])
    assert [x.foreign for x in v] == [True, False, False, True, False, False]
    assert v[4].code and v[0].english_share == 1.0 and 0.5 < v[3].english_share < 1.0


@pytest.mark.parametrize("use_lingua", [True, False])
def test_first_pass_only_mode_still_flags_clear_english(use_lingua):
    text = "This is the answer that you are looking for, and it is in English."
    v = LanguageChecker("it", use_lingua=use_lingua).check([text])
    assert v[0].foreign
