"""The Cerbero chat template (the released model's, D27), built from a language pack's tags.

``chat_template(pack)`` renders ``<s>[|Umano|] Ciao\n[|Assistente|] Ciao! Come posso aiutarti?\n``; with
``add_generation_prompt`` it ends in ``[|Assistente|] ``. ``training=True`` wraps each assistant
reply in ``{% generation %}`` markers so TRL's ``assistant_only_loss`` can mask it (it fails without them);
``eos_in_generation=True`` also puts the EOS token inside the block (D26).
"""

from __future__ import annotations

from cerbero_hf.languages import LanguagePack, load_language


def _q(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def chat_template(pack: LanguagePack | str = "it", *, training: bool = False, eos_in_generation: bool = False,
                  assistant_tag: str | None = None) -> str:
    pack = load_language(pack)
    user, assistant = _q(pack.user_tag), _q(assistant_tag or pack.assistant_tag)
    if training:
        eos = " + eos_token" if eos_in_generation else ""
        reply = ("{{ '" + assistant + " ' }}{% generation %}{{ message['content'] + '\\n'" + eos
                 + " }}{% endgeneration %}")
    else:
        reply = "{{ '" + assistant + " ' + message['content'] + '\\n' }}"
    return (
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ '" + user + " ' + message['content'] + '\\n' }}"
        "{% elif message['role'] == 'assistant' %}" + reply +
        "{% elif message['role'] == 'system' %}{{ message['content'] + '\\n' }}"
        "{% else %}{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '" + assistant + " ' }}{% endif %}"
    )


def stop_strings(pack: LanguagePack | str = "it") -> list[str]:
    """Stop strings for generation with the Cerbero format: the user tag (D32)."""
    return [load_language(pack).user_tag]
