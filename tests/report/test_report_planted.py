"""The run report of a partial run (seeds and refine only) whose inputs carry planted HTML: everything the corpus
says is shown as text, the numbers are the manifest's, and what did not run is not shown."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli
from fixtures_report import IMG, PLANTED_ID, SCRIPT, planted_recipe
from report_pages import read, rows

from cerbero_hf.cli import main


@pytest.fixture(scope="module")
def planted_report(planted_run, tmp_path_factory):
    import cerbero_hf

    out = tmp_path_factory.mktemp("planted-report") / "all.html"
    return cerbero_hf.report(planted_run, out, examples=100)  # every rejected and kept row is on the page


def test_untrusted_text_is_shown_as_text_and_nothing_can_run(planted_report):
    import html

    text = planted_report.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "<img" not in text.lower() and "onerror=" not in text.replace(
        "onerror=&quot;", "")  # no tag and no live attribute from the corpus
    for planted in (SCRIPT, IMG, PLANTED_ID, "</details></div>"):
        assert html.escape(planted, quote=True) in text, planted  # shown, escaped
    assert "default-src 'none'" in text  # and the page may neither run scripts nor fetch anything
    long = text.index("C&#x27;era una volta")  # a long message is folded: its start in a summary, all of it inside
    assert text.rfind("<details><summary>", 0, long) > text.rfind("</details>", 0, long)


def test_partial_run_shows_what_ran_with_the_manifests_numbers(planted_run, planted_report):
    manifest = json.loads((planted_run / "manifest.json").read_text())
    page = read(planted_report.read_text(encoding="utf-8"))
    assert page.sections == ["funnel", "examples", "diversity", "details"]  # no NLL, training or evaluation
    # Fig. 1 needs the language pack's embedder (no generate stage ran), which is not on this machine: a note
    assert "distiluse-base-multilingual-cased-v2 is not on this machine" in planted_report.read_text()
    funnel = {r["attrs"]["stage"]: r["attrs"] for r in rows(planted_report.read_text(), "funnel")}
    assert set(funnel) == {"seeds", "refine"}
    seeds, refine = manifest["stages"]["seeds"]["counts"], manifest["stages"]["refine"]["counts"]
    assert (int(funnel["seeds"]["kept"]), int(funnel["seeds"]["rejected"])) == (
        seeds["messages"], sum(seeds["rejected"].values()))
    assert (int(funnel["refine"]["in"]), int(funnel["refine"]["kept"]), int(funnel["refine"]["rejected"])) == (
        refine["input"], refine["kept"], refine["rejected"])
    by_rule = {(r["attrs"]["stage"], r["attrs"]["rule"]): int(r["attrs"]["rows"])
               for r in rows(planted_report.read_text(), "rules")}
    expected = {("seeds", k): v for k, v in seeds["rejected"].items() if v}
    expected |= {("refine", k): v for k, v in refine["removed"].items() if v}
    assert by_rule == expected and ("refine", "turn_order") in by_rule  # the planted row out of order
    assert "language" in planted_report.read_text() and "lang=&#x27;en&#x27;, not &#x27;it&#x27;" in (
        planted_report.read_text())  # the reason text of the rule
    hashes = {s: e["config_hash"] for s, e in manifest["stages"].items()}
    assert all(h in planted_report.read_text() for h in hashes.values())


def test_the_same_seed_shows_the_same_rows_and_the_default_file_is_in_the_run(planted_run, tmp_path):
    import cerbero_hf

    default = cerbero_hf.report(planted_run)
    assert default == planted_run / "report.html"
    again = cerbero_hf.report(planted_run, tmp_path / "again.html")
    strip = lambda p: p.read_text().split("<nav>", 1)[1]  # noqa: E731 - the header holds the time of writing
    assert strip(default) == strip(again)


def test_without_matplotlib_the_report_is_written_with_a_note(planted_run, tmp_path):
    out = tmp_path / "noplot.html"
    code = ("import sys; sys.modules['matplotlib'] = None; import cerbero_hf; "  # as if the plot extra were absent
            f"print(cerbero_hf.report({str(planted_run)!r}, {str(out)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "<svg" not in text and "pip install &#x27;cerbero-hf[plot]&#x27;" in text
    assert rows(text, "funnel")  # the tables are all there


def test_report_command_writes_the_page_or_says_what_is_missing(planted_run, tmp_path, capsys):
    out = tmp_path / "cli" / "page.html"
    main(["report", str(planted_run), "-o", str(out), "--examples", "1"])  # success returns
    assert out.is_file()
    assert capsys.readouterr().out.strip() == str(out)
    with pytest.raises(SystemExit) as stop:
        main(["report", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "no manifest.json here" in err[0]


def test_recorded_command_keeps_no_secret(planted_run, tmp_path):
    import shutil

    import cerbero_hf
    from cerbero_hf.report.build import public_command, record_command

    run = shutil.copytree(planted_run, tmp_path / "run")
    argv = ["cerbero-hf", "run", "r.yaml", "--set", "publish.token=hf_SECRETVALUE", "--api-key", "sk-SECRET2"]
    assert public_command(argv) == "cerbero-hf run r.yaml --set 'publish.token=<redacted>' --api-key '<redacted>'"
    record_command(run, argv)
    text = cerbero_hf.report(run).read_text()
    assert "SECRET" not in text and "cerbero-hf run r.yaml" in text


def test_run_prints_the_report_path_last(tmp_path, cli_env):
    recipe = planted_recipe(tmp_path)
    done = run_cli(["run", recipe], env=cli_env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = tmp_path / "run" / "report.html"
    assert done.stderr.strip().splitlines()[-1] == f"Report: {report}"
    assert "cerbero-hf run " in report.read_text() and "refine" in report.read_text()


def test_a_moved_run_folder_is_read_from_where_it_is_now(planted_run, tmp_path):
    import shutil

    import cerbero_hf

    moved = shutil.copytree(planted_run, tmp_path / "elsewhere", ignore=shutil.ignore_patterns("*.html"))
    manifest = json.loads((moved / "manifest.json").read_text())
    old = str(planted_run)  # the paths it recorded now point nowhere, as on another machine
    text = json.dumps(manifest).replace(json.dumps(old)[1:-1], "/no/such/machine/run")
    (moved / "manifest.json").write_text(text)
    page = cerbero_hf.report(moved).read_text()
    assert old not in page.split("<nav>", 1)[1] and rows(page, "rules")  # rules read from the moved folder
    assert {r["attrs"]["rule"] for r in rows(page, "rules")} == {
        r["attrs"]["rule"] for r in rows(cerbero_hf.report(planted_run, tmp_path / "here.html").read_text(), "rules")}
