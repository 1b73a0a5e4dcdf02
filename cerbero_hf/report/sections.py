"""The report's sections, each rendered from :func:`cerbero_hf.report.collect.collect`'s mapping.

Each function returns the inner HTML of one section, or ``None`` when the run has nothing for it (a stage that
did not run). Figures are drawn only when ``plots`` is true (matplotlib installed); the tables never depend on it.
"""

from __future__ import annotations

import json

import cerbero_hf.report.figures as figures  # the module (not the package's names): no import cycle
import cerbero_hf.report.paper as paper
from cerbero_hf.report.html import conversation, esc, figure, note, number, table
from cerbero_hf.report.tables import row_meta


def _plot(plots: bool, name: str, draw, *args, **kwargs) -> str | None:
    return figures.svg(draw(*args, **kwargs), name) if plots else None


def manifest_rules(row: dict) -> dict:
    return row.get("rules") or {}


def funnel(data: dict, plots: bool) -> str | None:
    rows = data["funnel"]
    if not rows:
        return None
    labels = [f"{r['stage']} · {r['corpus']} ({r['unit']})" for r in rows]
    svg = _plot(plots, "funnel", figures.funnel, [(lab, r["kept"], r["rejected"]) for lab, r in zip(labels, rows)])
    cells = [[r["stage"], r["corpus"], r["unit"], r["inputs"], r["kept"], r["rejected"],
              ", ".join(f"{k} {v:,}" for k, v in manifest_rules(r).items()), r.get("note") or "",
              "" if r.get("seconds") is None else f"{r['seconds']:.1f} s"] for r in rows]
    attrs = [{"stage": r["stage"], "corpus": r["corpus"], "unit": r["unit"], "in": r["inputs"], "kept": r["kept"],
              "rejected": r["rejected"]} for r in rows]
    out = [figure(svg, "Kept and rejected per stage (the manifest's counts).") if svg else ""]
    out.append(table(["stage", "corpus", "unit", "in", "kept", "rejected", "rejected by rule", "note", "time"],
                     cells, numeric=(3, 4, 5, 8), row_attrs=attrs, cls="funnel"))
    rules = data["rejections"]
    if rules:
        counted: dict = {}
        for r in rows:
            counted.setdefault((r["stage"], r["corpus"]), {}).update(manifest_rules(r))
        cells, attrs = [], []
        for r in rules:
            reasons = "".join(f"<li>{esc(p)} <span class=\"muted\">({n:,}; e.g. “{esc(first)}”)</span></li>"
                              for p, n, first in r["patterns"][:5])
            more = len(r["patterns"]) - 5
            reasons += f"<li class=\"muted\">… {more:,} more patterns</li>" if more > 0 else ""
            recorded = counted.get((r["stage"], r["corpus"]), {}).get(r["rule"])
            cells.append([r["stage"], r["corpus"], r["rule"], r["count"], number(recorded), ("html", f"<ul>{reasons}</ul>")])
            attrs.append({"stage": r["stage"], "corpus": r["corpus"], "rule": r["rule"], "rows": r["count"]})
        out.append("<h3>Rejected rows by rule, with their reasons</h3>")
        out.append(table(["stage", "corpus", "rule", "rows", "manifest", "reasons (numbers written N)"], cells,
                         numeric=(3, 4), row_attrs=attrs, cls="rules"))
    return "".join(out)


def examples(data: dict, plots: bool) -> str | None:
    blocks = []
    for group in data["examples"]:
        title = f"{group['stage']} · {group['corpus']}"
        parts = []
        for rule, rows in group["rejected"].items():
            convs = "".join(conversation(r, row_meta(r)) for r in rows)
            parts.append(f"<details open><summary>rejected by <b>{esc(rule)}</b> ({len(rows)} shown)</summary>{convs}"
                         "</details>")
        if group["kept"]:
            convs = "".join(conversation(r, row_meta(r)) for r in group["kept"])
            parts.append(f"<details open><summary>kept ({len(group['kept'])} shown)</summary>{convs}</details>")
        if parts:
            blocks.append(f"<h3>{esc(title)}</h3>{''.join(parts)}")
    if not blocks:
        return None
    return "<p class=\"muted\">A few rows sampled from each stage's output; corpus text is shown as text.</p>" + "".join(blocks)


def quality(data: dict, plots: bool) -> str | None:
    nll = data["nll"]
    if not nll["corpora"]:
        return None
    threshold = nll["threshold"]
    series = {}
    for corpus, c in nll["corpora"].items():
        series[f"{corpus}, scored"] = c["values"]
        if c["kept_values"] is not None:
            series[f"{corpus}, kept"] = c["kept_values"]
    label = f"max_nll {threshold:g}" if threshold is not None else f"paper's threshold {paper.NLL_THRESHOLD:g}"
    svg = _plot(plots, "nll", figures.distributions, series, threshold=threshold or paper.NLL_THRESHOLD,
                xlabel="MLM NLL per token (pseudo-log-likelihood)", threshold_label=label, lo=0.0)
    cells, attrs = [], []
    for corpus, c in nll["corpora"].items():
        s, k = c["scored"], c["kept"]
        share = None if s["share_under"] is None else f"{100 * s['share_under']:.1f} %"
        kept_share = (f"{100 * c['kept_messages'] / s['count']:.1f} %" if c["kept_messages"] is not None and s["count"]
                      else "–")
        cells.append([corpus, s["count"], number(s["mean"]), number(s["median"]), share,
                      number(c["kept_messages"]), kept_share, number(k["mean"]) if k else "–"])
        attrs.append({"corpus": corpus, "messages": s["count"], "mean": "" if s["mean"] is None else round(s["mean"], 4)})
    out = [figure(svg, "Paper Fig. 4 for this run: per-message NLL of each corpus before (scored) and after (kept) "
                       "the filter.") if svg else ""]
    if threshold is None:
        out.append(note("The filter stage did not run: the share is against the paper's threshold of 2."))
    out.append(table(["corpus", "messages scored", "mean NLL", "median", f"share < {threshold or 2:g}",
                      "messages kept by the filter", "share kept", "mean NLL kept"], cells,
                     numeric=(1, 2, 3, 4, 5, 6, 7), row_attrs=attrs, cls="nll"))
    out.append('<p class="paper">The paper (Fig. 4, Italian BERT, read off the figure): OASST ≈0.7–0.9, generated '
               "≈1.0, filtered Fauno ≈1.0–1.3, original Fauno spread over 0–5; messages at or above 2 are removed.</p>")
    return "".join(out)


def neighbours(data: dict, plots: bool) -> str:
    """Paper Fig. 1 for this run (the refine stage's corpus), or one note saying why it is not drawn."""
    info = data.get("neighbours")
    if info is None:
        return ""
    import numpy as np

    if "skipped" in info:
        return note(f"Fig. 1 (nearest-neighbour distances of the refined corpus) is not drawn: {info['skipped']}.")
    series = {"before refining (input)": info["before"], "after refining (kept)": info["after"]}
    svg = _plot(plots, "neighbours", figures.distributions, series, threshold=None, xlabel="embedding distance "
                f"(1 - cosine) to the {info['k']} nearest neighbours", threshold_label="", lo=0.0, hi=1.0) \
        if any(len(v) for v in series.values()) else None
    cells = [[name, f"{info[side + '_messages']:,}", f"{len(v):,}", f"{float(np.median(v)):.3f}" if len(v) else "",
              f"{float(np.mean(v)):.3f}" if len(v) else ""]
             for (name, v), side in zip(series.items(), ("before", "after"))]
    return ((figure(svg, "Paper Fig. 1 for this run: distances of each sampled message to its nearest neighbours "
                         "(identical messages ignored).") if svg else "")
            + table(["corpus", "messages embedded", "distances", "median", "mean"], cells, numeric=(1, 2, 3, 4),
                    cls="neighbours", row_attrs=[{"side": side, "messages": info[side + "_messages"]}
                                                 for side in ("before", "after")])
            + f'<p class="muted">Embedder: {esc(info["embedder"])}; up to {info["sample"]:,} sampled messages per '
              "side.</p>"
            + '<p class="paper">The paper (Fig. 1, distiluse-base-multilingual-cased-v1 on every message, read off '
              "the figure): the refined Fauno sits lower than the original, modes about 0.48 against 0.52.</p>")


def diversity(data: dict, plots: bool) -> str | None:
    fig1 = neighbours(data, plots)
    sim = data["similarity"]
    if sim is None:
        return fig1 or None
    values, threshold = sim["values"], sim["threshold"]
    svg = _plot(plots, "max_sim", figures.distributions, {"generated messages": values}, threshold=threshold,
                xlabel="cosine to the nearest stored message (max_sim)", threshold_label=f"threshold {threshold:g}",
                hi=1.0) if len(values) else None
    text = (f"{len(values):,} generated messages in the corpus carry their max_sim; {sim['accepted']:,} candidates "
            f"were accepted and {sim['rejected']:,} rejected as too similar (cosine > {threshold:g}; the manifest's "
            "counts). Rejected candidates are not rows: their similarity is not in the corpus.")
    return fig1 + (figure(svg, "Nearest-neighbour similarity of the accepted generated messages.") if svg else "") + \
        f'<p data-rejected-similar="{esc(sim["rejected"])}">{esc(text)}</p>'


def lengths(data: dict, plots: bool) -> str | None:
    info = data["lengths"]
    if info is None or not info["counts"]:
        return None
    target = (min(info["target"]), max(info["target"])) if info["target"] else None
    svg = _plot(plots, "lengths", figures.lengths, info["counts"], target, info["paper"])
    rows = [[n, c] for n, c in info["counts"].items()]
    text = (f"{info['conversations']:,} conversations; target lengths of this run: "
            f"{', '.join(map(str, info['target'])) or 'not recorded'}"
            + (f" ({info['within_target']:,} within {target[0]}–{target[1]})" if target else "")
            + f"; the paper draws {info['paper'][0]}–{info['paper'][1]} messages.")
    return (figure(svg, "Messages per generated conversation.") if svg else "") + f"<p>{esc(text)}</p>" + \
        table(["messages", "conversations"], rows, numeric=(0, 1), cls="lengths",
              row_attrs=[{"messages": n} for n, _ in rows])


def training(data: dict, plots: bool) -> str | None:
    info = data["train"]
    if info is None:
        return None
    out = []
    if info["loss"] or info["eval_loss"]:
        svg = _plot(plots, "loss", figures.loss_curve, info["loss"], info["eval_loss"])
        out.append(figure(svg, "Loss by step (trainer_state.json).") if svg else "")
        out.append(table(["step", "loss"], [[s, number(v)] for s, v in info["loss"]], numeric=(0, 1), cls="loss",
                         row_attrs=[{"step": s} for s, _ in info["loss"]]) if len(info["loss"]) <= 30 else "")
    else:
        out.append(note("No trainer_state.json with a loss history was found in the model folder."))
    counts = info["counts"]
    out.append(table(["result", "value"], [[k, number(v)] for k, v in counts.items()], numeric=(1,)))
    out.append("<h3>Hyper-parameters</h3>" + table(
        ["setting", "this run", "paper (Table 1, 7B on 8 GPUs)"],
        [[k, v, paper.TABLE1.get(k, "")] for k, v in info["params"].items()], row_attrs=[
            {"setting": k} for k in info["params"]]))
    if info["corpora"]:
        out.append(table(["corpus", "rows in", "rows used", "weight"], [[c.get("name"), c.get("rows_in"),
                   c.get("rows_used"), c.get("weight")] for c in info["corpora"]], numeric=(1, 2, 3)))
    return "".join(out)


def evaluation(data: dict, plots: bool) -> str | None:
    info = data["evaluation"]
    if info is None:
        return None
    columns = [(task, col, title) for task, (col, title) in paper.COLUMNS.items()]
    head = ["model"] + [title for _, _, title in columns]
    ours = ["this run" + (f" ({info['model']})" if info.get("model") else "")] + [
        f"{info['scores'][task]:.2f}" if task in info["scores"] else "not run" for task, _, _ in columns]
    rows = [ours] + [[f"paper: {name}"] + [f"{values[col]:.2f}" for _, col, _ in columns]
                     for name, *values in paper.TABLE2_3]
    attrs = [{"source": "run"}] + [{"source": "paper"}] * len(paper.TABLE2_3)
    return (table(head, rows, numeric=tuple(range(1, len(head))), row_attrs=attrs, cls="scores") +
            '<p class="paper">Rows marked "paper" are the paper\'s Tables 2 and 3 (SQuAD-it 3-shot, EVALITA 5-shot), '
            "for 7B models; this run's scores are percentages on its own evaluation set "
            f"({number(info['examples'])} examples).</p>")


def details(data: dict, plots: bool) -> str:
    d = data["details"]
    stages = table(["stage", "status", "time", "config hash"], [[s, e["status"], "" if e["seconds"] is None else
                   f"{e['seconds']:.2f} s", e["config_hash"]] for s, e in d["stages"].items()], numeric=(2,))
    command = d["command"] or "not recorded (`cerbero-hf run` and `demo` record it; this run did not come from them)"
    versions = table(["library", "version"], [[k, v] for k, v in d["versions"].items()])
    recipe = esc(json.dumps(d["recipe"], indent=2, ensure_ascii=False, default=str))
    return (f"<h3>Stages</h3>{stages}<h3>Command</h3><pre>{esc(command)}</pre>"
            f"<h3>Library versions</h3><p class=\"muted\">Installed when this report was written.</p>{versions}"
            f"<details><summary>Recipe (as recorded in manifest.json, secrets left out)</summary><pre>{recipe}</pre>"
            "</details>")


SECTIONS = (("funnel", "Funnel", funnel), ("examples", "Examples", examples), ("quality", "NLL (Fig. 4)", quality),
            ("diversity", "Diversity (Fig. 1)", diversity), ("lengths", "Lengths", lengths), ("training", "Training", training),
            ("evaluation", "Evaluation", evaluation), ("details", "Run details", details))
