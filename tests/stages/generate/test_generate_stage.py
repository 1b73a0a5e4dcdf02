"""The generate stage as one unit: GenerateConfig (the recipe keys and the CLI flags, validated once),
run_generate over the seeds stage's typed result, GenerateResult's flat counts, and the two attempt counts
(candidates per position vs HTTP attempts per request) kept apart."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import run_cli

from cerbero_hf.config import from_dict
from cerbero_hf.errors import InputError
from cerbero_hf.stages.generate.stage import STAGE, GenerateConfig, GenerateResult, make_backend

QA = [("Qual è la montagna più alta d'Italia?", "Il Monte Bianco, con circa 4800 metri."),
      ("Perché il mare è salato?", "Perché i fiumi portano sali minerali che si accumulano nel tempo.")]


def _seed_folder(path):
    from datasets import Dataset

    from cerbero_hf.io import save_hub_folder
    from cerbero_hf.schema import features, make_row

    rows = [make_row(f"oasst-{i}", [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "oasst",
                     {"origin": ["seed", "seed"]}) for i, (q, a) in enumerate(QA)]
    save_hub_folder(path, {"default": Dataset.from_list(rows, features=features())})
    return path


# -- validation: the same checks from the CLI, a recipe and Python -----------------------------------

@pytest.mark.parametrize("flag,value,text", [
    ("--concurrency", "0", "--concurrency must be >= 1, got 0"),
    ("--concurrency", "-2", "--concurrency must be >= 1, got -2"),
    ("--threshold", "7", "--threshold must be <= 1, got 7.0"),
    ("--max-attempts", "0", "--max-attempts must be >= 1, got 0"),
    ("--request-attempts", "0", "--request-attempts must be >= 1, got 0"),
])
def test_cli_rejects_bad_values_at_once_with_one_line(tmp_path, cli_env, flag, value, text):
    out = tmp_path / "out"
    res = run_cli(["generate", _seed_folder(tmp_path / "seeds"), out, "--endpoint", "http://127.0.0.1:1", flag, value],
                  env=cli_env, timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [f"Error: {text}"]
    assert not out.exists() and not (tmp_path / "out.cache.sqlite").exists()


def test_cli_needs_a_generator_and_a_set_key_variable(tmp_path, cli_env):
    seeds, out = _seed_folder(tmp_path / "seeds"), tmp_path / "out"
    res = run_cli(["generate", seeds, out], env=cli_env, timeout=60)
    assert res.returncode == 2 and "--endpoint URL" in res.stderr and "--model PATH_OR_ID" in res.stderr
    env = {k: v for k, v in cli_env.items() if k != "CERBERO_UNSET_KEY"}
    res = run_cli(["generate", seeds, out, "--endpoint", "http://127.0.0.1:1", "--api-key-env", "CERBERO_UNSET_KEY"],
                  env=env, timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "CERBERO_UNSET_KEY is not set" in res.stderr and "--api-key-env" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("bad", [{"concurrency": 0}, {"threshold": -1.5}, {"max_attempts": 0}, {"request_attempts": 0},
                                 {"lengths": [4, 1]}, {"lengths": []}, {"index": "ivf"}, {"mode": "stream"},
                                 {"timeout": 0}, {"top_p": 0}, {"backend": "cloud"}, {"endpoint": "localhost:8080"},
                                 {"extra_body": "[1, 2]"}, {"extra_body": "{not json"}])
def test_config_checks_at_construction(bad):
    with pytest.raises(InputError) as err:
        GenerateConfig(**bad)
    assert err.value.column == f"generate.{next(iter(bad))}"


def test_concurrency_zero_is_an_input_error():
    with pytest.raises(InputError, match="generate.concurrency must be >= 1"):
        GenerateConfig(concurrency=0)


def test_recipe_max_attempts_leaves_request_attempts_alone():
    """The old recipe fed max_attempts to the HTTP retries too; now each count is its own setting."""
    config = from_dict(GenerateConfig, {"max_attempts": 3, "endpoint": "http://127.0.0.1:1"})
    default = GenerateConfig().request_attempts
    assert config.max_attempts == 3 and config.request_attempts == default == 5
    backend = make_backend(config)
    assert backend.request_attempts == default and not hasattr(backend, "max_attempts")
    backend = make_backend(dataclasses.replace(config, request_attempts=2))
    assert backend.request_attempts == 2


def test_recipe_and_cli_share_one_set_of_names():
    from cerbero_hf.cli._config import cli_fields

    names = {f.name for f in dataclasses.fields(GenerateConfig)}
    assert {s["name"] for s in cli_fields(GenerateConfig)} == names  # every setting is a flag and a recipe key
    assert STAGE.config is GenerateConfig and STAGE.inputs == ("seeds",) and STAGE.folder == "generated"


def test_generator_is_inferred_and_checked_when_the_recipe_enables_the_stage():
    assert GenerateConfig(endpoint="http://h:1", model="served").generator() == "endpoint"
    assert GenerateConfig(model="path/to/lm").generator() == "local"
    assert GenerateConfig.from_recipe({"backend": "local", "model": "m"}).generator() == "local"
    GenerateConfig.from_recipe({}, enabled=False)  # a disabled stage needs no generator
    with pytest.raises(InputError) as err:
        GenerateConfig.from_recipe({"threshold": 0.8}, file="r.yaml")
    assert err.value.file == "r.yaml" and err.value.column == "generate.endpoint"
    with pytest.raises(InputError, match="generate.endpoint is set but generate.backend is local"):
        GenerateConfig(backend="local", model="m", endpoint="http://h:1")
    with pytest.raises(InputError, match="generate.endpoint must be set when generate.backend is endpoint"):
        GenerateConfig(backend="endpoint", model="m")


def test_extra_body_json_or_mapping_and_the_key_is_a_name():
    assert GenerateConfig(extra_body='{"top_k": 5}').extra_body == {"top_k": 5}
    assert from_dict(GenerateConfig, {"extra_body": {"top_k": 5}}).extra_body == {"top_k": 5}
    assert GenerateConfig(api_key_env="HF_TOKEN").api_key_env == "HF_TOKEN"
    with pytest.raises(InputError) as err:
        GenerateConfig(api_key_env="sk-live-0123456789")
    assert "sk-live" not in str(err.value)  # a pasted key is never echoed


# -- run_generate: typed input, typed flat result, the two attempt counts ------------------------------

def test_run_generate_keeps_candidate_and_http_attempts_apart(tgi_server, tiny_embedder, tmp_path):
    from cerbero_hf.io import load_table
    from cerbero_hf.schema import get_meta
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.generate.stage import run_generate
    from cerbero_hf.stages.seeds.stage import SeedsResult

    seeds = SeedsResult(seeds=str(_seed_folder(tmp_path / "seeds")))
    config = from_dict(GenerateConfig, {"endpoint": tgi_server.url, "mode": "completion",
                                        "embedder": str(tiny_embedder), "max_attempts": 3, "request_attempts": 2,
                                        "backoff": 0.01, "max_new_tokens": 8, "resume": False,
                                        "max_failed_share": 1.0})  # a run of failed rows is what is looked at here
    events = []

    # every request fails: each conversation ends at its first request, after request_attempts HTTP attempts
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: "503"
    result = run_generate(config, Context(output=tmp_path / "down", inputs={"seeds": seeds},
                                          on_event=lambda e, s: events.append((e, dict(s)))))
    assert isinstance(result, GenerateResult) and result.generated == str(tmp_path / "down")
    assert events[0] == ("planned", {"conversations": 2})
    assert (result.conversations, result.failed, result.failed_requests) == (2, 2, 2)
    assert len(tgi_server.log) == 2 * 2 and result.request_retries == 2
    assert result.requests_sent == 2 * 2  # every request sent counts, failed and retried ones too
    assert all(isinstance(v, int) for v in result.counts().values())  # flat counts, no nested summary
    rejected = load_table(tmp_path / "down", config="rejected")
    assert all("after 2 attempts" in r["reason"] for r in rejected)
    assert {get_meta(r)["generator"]["max_attempts"] for r in rejected} == {3}

    # every answer duplicates a seed message: max_attempts candidates per position, one HTTP attempt each
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: f"text:{QA[0][1]}"
    result = run_generate(config, Context(output=tmp_path / "dupes", inputs={"seeds": seeds}))
    assert result.failed == 2 and result.rejected_similar == result.rejected_messages == 2 * 3
    assert len(tgi_server.log) == 2 * 3 and result.request_retries == 0 and result.requests_sent == 2 * 3
    assert all("similar x3" in r["reason"] for r in load_table(tmp_path / "dupes", config="rejected"))
    card = (tmp_path / "dupes" / "README.md").read_text()
    assert "| rejected_similar | 6 |" in card and "| request_retries | 0 |" in card


def test_run_generate_needs_the_seeds_result(tmp_path):
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.generate.stage import run_generate

    with pytest.raises(InputError, match="needs the output of 'seeds'"):
        run_generate(GenerateConfig(endpoint="http://127.0.0.1:1"), Context(output=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_cli_with_a_local_model_prints_the_flat_counts(tiny_chat_lm, tiny_embedder, tmp_path, cli_env):
    from cerbero_hf.io import load_table
    from cerbero_hf.schema import get_meta

    out = tmp_path / "out"
    res = run_cli(["generate", _seed_folder(tmp_path / "seeds"), out, "--model", tiny_chat_lm, "--embedder",
                   tiny_embedder, "--threshold", "0.9999", "--max-new-tokens", "6", "--keep-truncated", "--lengths",
                   "4", "--no-resume"], env=cli_env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "accepted_messages" in res.stdout and "rejected_similar" in res.stdout and "summary" not in res.stdout
    assert not (tmp_path / "out.cache.sqlite").exists()  # --no-resume: no replay cache
    rows = list(load_table(out))
    if (out / "rejected").exists():
        rows += list(load_table(out, config="rejected"))
    assert len(rows) == 2
    assert {get_meta(r)["generator"]["model"] for r in rows} == {str(tiny_chat_lm)}
    card = (out / "README.md").read_text()
    assert '"backend": "local"' in card and "cerbero-hf generate" in card


def test_requests_sent_counts_retries_and_failures_beside_it(tgi_server, tiny_embedder, tmp_path):
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.generate.stage import run_generate
    from cerbero_hf.stages.seeds.stage import SeedsResult

    seeds = SeedsResult(seeds=str(_seed_folder(tmp_path / "seeds")))
    config = from_dict(GenerateConfig, {"endpoint": tgi_server.url, "mode": "completion", "max_conversations": 1,
                                        "embedder": str(tiny_embedder), "threshold": 0.9999, "lengths": [4],
                                        "request_attempts": 2, "backoff": 0.01, "resume": False})
    tgi_server.reset()  # one 503 then an answer, for every request: each request takes two attempts
    tgi_server.fault_fn = lambda n: "503" if n % 2 == 0 else f"text:Una risposta nuova, la numero {n}."
    result = run_generate(config, Context(output=tmp_path / "out", inputs={"seeds": seeds}))
    assert result.complete == 1 and result.accepted_messages == 2
    assert result.requests_sent == len(tgi_server.log) == 4
    assert (result.request_retries, result.failed_requests) == (2, 0)
    assert result.tokens_out == 2


def test_a_seed_message_over_max_chars_is_never_sent(tgi_server, tiny_embedder, tmp_path):
    from datasets import Dataset

    from cerbero_hf.io import load_table, save_hub_folder
    from cerbero_hf.schema import features, get_meta, make_row
    from cerbero_hf.stages.base import Context
    from cerbero_hf.stages.generate.stage import run_generate
    from cerbero_hf.stages.seeds.stage import SeedsResult

    huge = "parola " * (10_000_000 // 7)  # about 10 MB of text in one seed message
    rows = [make_row("huge", [{"role": "user", "content": "Ciao, una domanda."}, {"role": "assistant", "content": huge}],
                     "oasst", {"origin": ["seed", "seed"]}),
            make_row("fine", [{"role": "user", "content": QA[0][0]}, {"role": "assistant", "content": QA[0][1]}],
                     "oasst", {"origin": ["seed", "seed"]})]
    save_hub_folder(tmp_path / "seeds", {"default": Dataset.from_list(rows, features=features())})
    config = from_dict(GenerateConfig, {"endpoint": tgi_server.url, "mode": "completion", "concurrency": 1,
                                        "embedder": str(tiny_embedder), "threshold": 0.9999, "lengths": [4],
                                        "backoff": 0.01, "resume": False})
    tgi_server.reset()
    tgi_server.fault_fn = lambda n: f"text:Una risposta nuova, la numero {n}."
    result = run_generate(config, Context(output=tmp_path / "out",
                                          inputs={"seeds": SeedsResult(seeds=str(tmp_path / "seeds"))}))
    assert (result.seeds_too_long, result.failed, result.complete) == (1, 1, 1)
    assert len(tgi_server.log) == result.requests_sent == 2  # the two messages of "fine", nothing of "huge"
    assert result.store_size == 3 + 2  # the three short seed messages and two new ones; the huge one not embedded
    rejected = list(load_table(tmp_path / "out", config="rejected"))
    assert [r["id"] for r in rejected] == ["huge"]
    reason = rejected[0]["reason"]
    assert "seed message 1" in reason and "over the maximum of 8000" in reason and "max_chars" in reason
    assert get_meta(rejected[0])["status"] == "failed"
    assert [r["id"] for r in load_table(tmp_path / "out")] == ["fine"]


def test_max_chars_is_documented_in_the_help():
    from cerbero_hf.config import field_specs

    help_text = next(s["help"] for s in field_specs(GenerateConfig) if s["name"] == "max_chars")
    assert "8000" in help_text and "seed" in help_text and "rejected" in help_text
