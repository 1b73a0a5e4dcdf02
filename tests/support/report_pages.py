"""Reading a written report back in tests: its tables (by class) with each row's ``data-*`` attributes and cell
texts, and its sections (by id), with the standard library's HTML parser."""

from __future__ import annotations

from html.parser import HTMLParser


class _Reader(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[dict]] = {}
        self.sections: list[str] = []
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._row = {"attrs": {k[5:]: v for k, v in attrs.items() if k.startswith("data-")}, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row["attrs"]:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read(html: str) -> _Reader:
    reader = _Reader()
    reader.feed(html)
    return reader


def rows(html: str, cls: str) -> list[dict]:
    """The data rows (those with ``data-*`` attributes) of the report table of class ``cls``."""
    return read(html).tables.get(cls, [])
