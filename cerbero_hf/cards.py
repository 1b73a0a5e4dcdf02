"""Cards: every README this project writes is rendered here, from a packaged Jinja template.

One renderer, :func:`render` (template name or ``.j2`` path + card data -> ``DatasetCard`` / ``ModelCard``),
used for:

- published dataset cards, :func:`dataset_card` (templates ``generated_corpus``, ``refined_corpus``,
  ``training_mix``): reads a Hub-layout folder written by ``io.save_hub_folder`` (its ``configs:`` and
  parquet row counts), writes the NLL histogram PNG into the folder and renders language, license, task
  categories, size category, tags (``synthetic``, ``cerbero-hf``), the pipeline parameters, stage counts,
  the histogram, an example row, how to load it, and the paper's citation (arXiv 2311.15698);
- the model card (template ``model``, ``cerbero_hf.stages.train.model_card``);
- the working cards of stage output folders: ``io.save_hub_folder`` renders template ``folder`` around a
  body that :func:`stage_body` renders from template ``stage`` (title, description, configs, sections such
  as :func:`table`, and the command that reproduces the folder).

Templates are package data (``cerbero_hf/resources/cards/``); the repository's
``dataset_scripts/<name>/README.md.j2`` and ``model_cards/cerbero.md.j2`` are identical published copies.
Keys that look like secrets (:func:`cerbero_hf.redact.is_secret_key`) are dropped from every card.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from cerbero_hf.redact import is_secret_key
from cerbero_hf.report.card_figures import FUNNEL, HISTOGRAM, card_images, nll_histogram  # noqa: F401 - re-exported

TITLE = ("Cerbero-7B: A Leap Forward in Language-Specific LLMs Through Enhanced Chat Corpus Generation and "
         "Evaluation")
CITATION = """@article{galatolo2023cerbero,
  title   = {%s},
  author  = {Galatolo, Federico A. and Cimino, Mario G. C. A.},
  journal = {arXiv preprint arXiv:2311.15698},
  year    = {2023}
}""" % TITLE
SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_PATH_CHARS = r"[^\s\"'`|()\[\]{},;<>\\/]"
_QUOTED_PATH = re.compile(r"(?P<q>[`\"'])(?P<path>/[^`\"'\n]*[^`\"'\n/])/?(?P=q)")
_LINE_END_PATH = re.compile(r"(?m)(?<=: )(?P<path>/[^\n\"'`]*[^\n\"'`/ ])\s*$")
_BARE_PATH = re.compile(r"(?<![\w.:/~\\$}>-])(?P<path>/" + _PATH_CHARS + r"+(?:/" + _PATH_CHARS + r"+)+)/?")
_GENERATED = re.compile(r'"origin":\s*\[[^\]]*"generated"')  # meta of a row with a self-chat message


def _local(path: str) -> bool:
    """An absolute path of this machine (it, or the folder it would be in, exists), deeper than ``/usr``."""
    p = Path(path)
    return len(p.parts) > 2 and (p.exists() or p.parent.exists())


def public(value):
    """``value`` (a string, or lists / tuples / mappings of them) as a public card may show it: a local path
    becomes its file or folder name (``/home/me/models/mlm`` -> ``mlm``; Hub ids and URLs stay), an unexpanded
    ``${VAR}`` becomes ``<VAR>`` (never its value: it may be a secret)."""
    if isinstance(value, str):
        if "\n" not in value and os.path.isabs(value) and _local(value):
            return Path(value).name
        name = lambda m: m.group(0).replace(m.group("path"), Path(m.group("path")).name) if _local(  # noqa: E731
            m.group("path")) else m.group(0)
        text = _VAR.sub(lambda m: f"<{m.group(1)}>", value)
        for pattern in (_QUOTED_PATH, _LINE_END_PATH, _BARE_PATH):
            text = pattern.sub(name, text)
        return text
    if isinstance(value, (list, tuple)):
        return type(value)(public(v) for v in value)
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()}
    return value


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    return next((label for limit, label in SIZES if n < limit), "n>100M")


def flatten(params: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]``, without secret-looking keys (token, api_key, ...)."""
    rows = []
    for key, value in (params or {}).items():
        if is_secret_key(key):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        else:
            rows.append((name, json.dumps(value, ensure_ascii=False) if isinstance(value, (list, tuple)) else value))
    return rows


def _files(folder: Path, entry: dict) -> list[Path]:
    """The parquet files of one ``configs:`` entry (``data_files`` as a list of ``{split, path}`` or a glob)."""
    from cerbero_hf.data_files import data_globs

    return sorted(p for pattern in data_globs(entry["data_files"]) for p in folder.glob(pattern) if p.suffix == ".parquet")


def _row_counts(folder: Path, configs: list[dict]) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {c["config_name"]: sum(pq.read_metadata(p).num_rows for p in _files(folder, c)) for c in configs}


def _example(folder: Path, configs: list[dict], max_chars: int = 300) -> str:
    """The first row of the default config with a generated message (``meta`` ``origin``; else the first row) as
    pretty JSON: long strings shortened, a JSON string (``meta``) shortened inside so it stays JSON, local paths
    outside ``messages`` shown by name (:func:`public`)."""
    import pyarrow.parquet as pq

    default = next((c for c in configs if c.get("default")), configs[0])
    files = _files(folder, default)
    if not files:
        return "{}"
    group = pq.ParquetFile(files[0]).read_row_group(0)
    metas = group.column("meta").to_pylist() if "meta" in group.column_names else []
    row = group.slice(next((i for i, m in enumerate(metas) if _GENERATED.search(str(m or ""))), 0), 1).to_pylist()[0]

    def short(v):
        if isinstance(v, str) and v[:1] in "{[":
            try:
                inner = json.loads(v)
            except ValueError:
                inner = None
            if isinstance(inner, (dict, list)):
                return json.dumps(short(public(inner)), ensure_ascii=False)
        if isinstance(v, str) and len(v) > max_chars:
            return v[:max_chars] + "…"
        if isinstance(v, list):
            return [short(x) for x in v]
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        return v

    shown = {k: short(v) if k == "messages" else short(public(v)) for k, v in row.items()}
    return json.dumps(shown, ensure_ascii=False, indent=2)


def template_path(template: str | Path) -> Path:
    """A packaged template name (``generated_corpus``; see :mod:`cerbero_hf.resources`) or a ``.j2`` path."""
    path = Path(template)
    if path.suffix == ".j2":
        return path
    from cerbero_hf.resources import card_template

    return card_template(str(template))


def render(template: str | Path, data=None, *, kind: str = "dataset", **context):
    """Render a card: ``template`` (packaged name or ``.j2`` path) with ``card_data`` = ``data`` as YAML.

    Args:
        template: ``generated_corpus``, ``refined_corpus``, ``training_mix``, ``model``, ``folder``, ``stage``
            or a path to a ``.j2`` file.
        data: a ``DatasetCardData`` / ``ModelCardData`` (or a mapping of card data); its keys are also
            template variables, overridden by ``context``.
        kind: ``"dataset"`` or ``"model"``: the card class returned.
        context: the template's other variables.

    Returns:
        A ``huggingface_hub.DatasetCard`` or ``ModelCard``; ``card.save(path)`` writes it.
    """
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

    card_cls, data_cls = {"dataset": (DatasetCard, DatasetCardData), "model": (ModelCard, ModelCardData)}[kind]
    if data is None or isinstance(data, dict):
        data = data_cls(**(data or {}))
    return card_cls(render_text(template, **{**data.to_dict(), **context, "card_data": data.to_yaml()}))


def render_text(template: str | Path, **context) -> str:
    """``template`` (packaged name or ``.j2`` path) rendered with Jinja: the one place templates are filled.

    Every template also sees ``repo_url`` and ``docs_url`` (:data:`cerbero_hf.REPO_URL`, :data:`cerbero_hf.DOCS_URL`),
    so published cards link to the project and its docs by URL, never by a local path. Every value is shown
    through :func:`public`: local paths by name, no unexpanded ``${VAR}`` (``example``, the example row, is
    prepared by :func:`_example`, which leaves the messages as they are).
    """
    import jinja2

    from cerbero_hf import DOCS_URL, REPO_URL

    links = {"repo_url": REPO_URL, "docs_url": DOCS_URL}
    shown = {k: v if k == "example" else public(v) for k, v in context.items()}
    return jinja2.Template(template_path(template).read_text(encoding="utf-8")).render(**{**links, **shown})


def table(columns: list[str], rows, *, right: tuple[str, ...] = ()) -> str:
    """A Markdown table (``right``: columns aligned right); values are shown as they are."""
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---:" if c in right else "---" for c in columns) + " |"
    return "\n".join([head, rule, *("| " + " | ".join(str(v) for v in row) + " |" for row in rows)])


def stage_body(title: str, description: str, *, configs: Sequence[tuple[str, str]] = (),
               sections: Sequence[tuple[str, str]] = (), command: str | None = None) -> str:
    """The Markdown body of a stage output folder's card (template ``stage``), for ``io.save_hub_folder``.

    Args:
        title / description: the heading and the paragraph under it.
        configs: ``(config name, what it holds)`` pairs.
        sections: ``(heading, Markdown)`` pairs (an empty heading continues the text), e.g. a :func:`table`.
        command: the command line that reproduces the folder (secrets are never part of it).
    """
    text = render_text("stage", title=title, description=description, configs=list(configs),
                       sections=list(sections), command=command)
    return text.rstrip("\n") + "\n"


def dataset_card(folder, *, template: str | Path = "generated_corpus", repo_id: str | None = None,
                 pretty_name: str | None = None, language: str = "it", language_name: str = "Italian",
                 license: str = "cc-by-nc-4.0", task_categories: tuple[str, ...] = ("text-generation",),
                 recipe: dict | None = None, models: dict[str, str] | None = None, thresholds: dict | None = None,
                 seeds: dict | None = None, stage_counts: dict[str, int] | None = None, nll=None,
                 nll_threshold: float | None = 2.0, tags: tuple[str, ...] = (), save: bool = True):
    """Render and (by default) save ``folder/README.md`` for a Hub-layout corpus folder.

    Args:
        folder: written by ``io.save_hub_folder`` (its README ``configs:`` are kept as they are).
        template: a packaged template name (``generated_corpus``, ...) or a ``.j2`` path.
        repo_id: the Hub id shown in the "how to load" snippet (default: ``<user>/<folder name>``).
        recipe: the recipe section that produced the data (nested dicts are flattened; secrets dropped).
        models: ``{role: "model_id@revision"}`` (e.g. generator, embedder, mlm).
        thresholds, seeds: numbers shown with the parameters.
        stage_counts: ``{stage: rows}`` in pipeline order (seeds, generated, rejected by similarity, ...); also
            drawn as ``images/funnel.png``.
        nll: per-message NLL values; when given, ``images/nll_histogram.png`` is written and shown (without
            matplotlib, the ``plot`` extra, the card has no image and a note goes to stderr).

    Returns:
        The ``huggingface_hub.DatasetCard``.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = Path(folder)
    written = DatasetCard.load(folder / "README.md").data.to_dict()
    configs = written.get("configs") or []
    counts = _row_counts(folder, configs)
    default_rows = counts.get("default", sum(counts.values()))
    images = card_images(folder, nll=nll, nll_threshold=nll_threshold, stage_counts=stage_counts)
    repo_id = repo_id or f"<user>/{folder.name}"
    params = flatten({"recipe": recipe or {}, "thresholds": thresholds or {}, "seeds": seeds or {}})
    data = DatasetCardData(
        language=[language], license=license, task_categories=list(task_categories),
        size_categories=[size_category(default_rows)], tags=list(dict.fromkeys(["synthetic", "cerbero-hf", *tags])),
        pretty_name=pretty_name or folder.name, configs=configs, dataset_info=written.get("dataset_info"),
        cerbero_hf={"stage_counts": dict(stage_counts or {}), "rows": counts,
                    "models": {k: v for k, v in (models or {}).items() if not is_secret_key(k)}})
    card = render(
        template, data, repo_id=repo_id,
        pretty_name=pretty_name or folder.name, language_name=language_name, counts=counts,
        stage_counts=list((stage_counts or {}).items()), models=list((models or {}).items()), params=params,
        histogram=images.get("histogram"), funnel=images.get("funnel"),
        example=_example(folder, configs) if configs else "{}",
        has_rejected="rejected" in counts, citation=CITATION)
    if save:
        card.save(str(folder / "README.md"))
    return card
