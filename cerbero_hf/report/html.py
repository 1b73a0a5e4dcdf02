"""HTML building blocks of the report: escaping, tables, conversations, the page around the sections.

Every value that comes from a run (corpus text, ids, reasons, rule names, paths, config values) goes through
:func:`esc`; the page holds no script, and its Content-Security-Policy allows no script and no request
(``default-src 'none'``), so the file opens from disk with nothing to fetch and nothing to run.
"""

from __future__ import annotations

import html

FOLD_AT = 600  # characters: a longer message is folded (<details>)
CUT_AT = 20_000  # characters: the most of one message the page holds
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;opacity:.9}nav{padding:8px 32px;background:#e8eef4;position:sticky;top:0}
nav a{margin-right:14px;color:#1f3b57;text-decoration:none;font-weight:600}
main{padding:8px 32px 40px;max-width:1200px}section{margin-top:28px}h2{border-bottom:2px solid #1f3b57}
table{border-collapse:collapse;margin:8px 0 14px;background:#fff}th,td{border:1px solid #ccd;padding:3px 8px;
vertical-align:top;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr[data-source=paper] td{color:#555;font-style:italic}tr[data-source=run] td{font-weight:700}
th{background:#eef2f6}.note{background:#fff6d6;border-left:4px solid #e0b000;padding:6px 10px;margin:8px 0}
.paper{color:#555;font-style:italic}.muted{color:#666}figure{margin:8px 0}figure svg{max-width:100%;height:auto}
.conv{background:#fff;border:1px solid #ccd;border-radius:6px;margin:8px 0;padding:6px 10px}
.conv-head{font-size:12px;color:#555;margin-bottom:4px}.reason{color:#a11;font-weight:600}
.msg{margin:4px 0;padding:4px 8px;border-radius:4px}.msg .text{white-space:pre-wrap;overflow-wrap:anywhere}
.role-user{background:#eef5ff}.role-assistant{background:#f1f8ec}.role-system{background:#f4f0fa}
.role{font-weight:700;font-size:12px;text-transform:uppercase;margin-right:6px}.facts{font-size:12px;color:#555}
.removed{outline:2px dashed #cc3311}details summary{cursor:pointer}code,pre{font-size:12px}
pre{white-space:pre-wrap;background:#fff;border:1px solid #ccd;padding:6px}
"""


def esc(value) -> str:
    """``value`` as HTML text: ``<``, ``>``, ``&`` and quotes escaped (it can never open a tag or an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def number(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def table(headers: list[str], rows: list[list], *, numeric: tuple[int, ...] = (), row_attrs: list[dict] | None = None,
          cls: str = "") -> str:
    """A table; cells are escaped text unless given as ``("html", markup)`` (markup built here, escaped inside)."""
    def cell(i, value, tag="td"):
        klass = ' class="n"' if i in numeric else ""
        if isinstance(value, tuple) and value[:1] == ("html",):
            body = value[1]
        else:
            body = esc(f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value)
        return f"<{tag}{klass}>{body}</{tag}>"

    head = "".join(cell(i, h, "th") for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in ((row_attrs or [{}] * len(rows))[r] or {}).items())
        body.append(f"<tr{attrs}>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>")
    klass = f' class="{esc(cls)}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def figure(svg: str | None, caption: str) -> str:
    """An inline SVG (made by :func:`cerbero_hf.report.figures.svg`) with its caption."""
    return f"<figure>{svg or ''}<figcaption class=\"muted\">{esc(caption)}</figcaption></figure>"


def _text(content: str) -> str:
    content = content or ""
    cut = "" if len(content) <= CUT_AT else f"\n… ({len(content) - CUT_AT:,} more characters not shown)"
    shown = content[:CUT_AT]
    if len(content) <= FOLD_AT:
        return f'<div class="text">{esc(shown)}</div>'
    return (f'<details><summary><span class="text">{esc(shown[:300])}…</span> <span class="muted">'
            f'({len(content):,} characters: show all)</span></summary><div class="text">{esc(shown)}{esc(cut)}'
            f"</div></details>")


def _facts(meta: dict, i: int, n: int) -> str:
    parts = []
    for key, label in (("origin", ""), ("nll", "NLL "), ("max_sim", "max sim "), ("foreign_language", "")):
        values = meta.get(key)
        if isinstance(values, list) and len(values) == n and values[i] is not None:
            value = values[i]
            if key == "foreign_language":
                value = "foreign language" if value else None
            elif isinstance(value, float):
                value = f"{value:.3f}"
            if value is not None:
                parts.append(f"{label}{value}")
    return f'<span class="facts">{esc(" · ".join(parts))}</span>' if parts else ""


def conversation(row: dict, meta: dict) -> str:
    """One row: its id, source and (for a rejected row) rule and reason, then every message with its role."""
    messages = row.get("messages") or []
    head = [f"id {esc(row.get('id'))}", f"source {esc(row.get('source'))}", f"{len(messages)} messages"]
    if row.get("rule"):
        head.append(f'<span class="reason">{esc(row.get("rule"))}: {esc(row.get("reason"))}</span>')
    body = []
    for i, message in enumerate(messages):
        message = message if isinstance(message, dict) else {"role": "?", "content": str(message)}
        role = str(message.get("role") or "?")
        klass = f"role-{role}" if role in ("user", "assistant", "system") else "role-other"
        body.append(f'<div class="msg {klass}"><span class="role">{esc(role)}</span>{_facts(meta, i, len(messages))}'
                    f"{_text(message.get('content') or '')}</div>")
    if not messages:
        body.append('<div class="msg muted">(no messages)</div>')
    return f'<div class="conv"><div class="conv-head">{" · ".join(head)}</div>{"".join(body)}</div>'


def page(title: str, subtitle: list[str], sections: list[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are ``(anchor, heading, inner HTML)``; the navigation links to each."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{inner}</section>' for a, h, inner in sections)
    lines = "".join(f"<p>{esc(s)}</p>" for s in subtitle)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{esc(title)}</h1>{lines}</header><nav>{nav}</nav><main>{body}</main></body></html>\n")
