"""The llm prompter against real servers on 127.0.0.1, through litellm: OpenAI-compatible, Anthropic's
Messages API, and a provider without JSON mode (Cohere's chat API)."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import pytest
import yaml
from anthropic_server import MessagesServer, message
from conftest import aa
from openai_server import ChatServer, completion

from aa_core.api import AAError, PrompterContext

KEY = "sk-aa-test-SECRET-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-SECRET-fedcba9876543210"
COHERE_KEY = "co-test-SECRET-5555555555"
PASSWORD = "hunter2-PASSWORD-in-url"  # a proxy's password written inside prompts.api_base
CATEGORIES = ["mug", "bike"]


@pytest.fixture(autouse=True)
def key_in_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("COHERE_API_KEY", COHERE_KEY)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def with_password(url: str) -> str:
    return url.replace("http://", f"http://proxy-user:{PASSWORD}@", 1)


def category_of(body: dict) -> str:
    content = body["messages"][-1]["content"]  # a string, or Anthropic's list of content blocks
    text = content if isinstance(content, str) else "".join(block["text"] for block in content)
    return re.search(r"shows one (.+?) as it appears", text).group(1)


def answer(prompts: list[str]) -> tuple[int, dict, dict]:
    return 200, {}, completion(json.dumps({"prompts": prompts}))


def varied(category: str, n: int = 3) -> list[str]:
    scenes = ["on a wooden desk at dawn", "in a cluttered garage, top view", "as a watercolor sketch by a window", "under neon light"]
    return [f"a {category} {scene}" for scene in scenes[:n]]


def prompter(server_url: str | None, cache: Path, model: str = "openai/gpt-4o-mini", **options):
    from aa_llm.prompter import LLMPrompter

    context = PrompterContext(model=model, cache_dir=cache, run_dir=cache, is_main_process=True, description="Office items.")
    return LLMPrompter(LLMPrompter.Options(api_base=server_url, **options), context)


def test_a_normal_answer_gives_n_prompts_per_category_with_tokens_and_no_hosted_price(tmp_path):
    with ChatServer(lambda body: answer(varied(category_of(body)))) as server:
        p = prompter(server.url, tmp_path)
        prompts = p.prompts(CATEGORIES, "photo", per_class=3, seed=0)
    assert [x.label for x in prompts] == ["mug"] * 3 + ["bike"] * 3
    assert all(x.label in x.text for x in prompts)
    usage = p.usage()
    assert usage["requests"] == 2 and usage["prompt_tokens"] == 40 and usage["completion_tokens"] == 60
    assert usage["cost_usd"] is None  # a local server that calls itself gpt-4o-mini is not billed at OpenAI's price
    request = server.requests[0]
    assert request["response_format"] == {"type": "json_object"} and "Office items." in request["messages"][0]["content"]
    assert request["max_tokens"] == 4096 and request["temperature"] == 1.0 and isinstance(request["seed"], int)


def test_cost_is_the_providers_price_on_its_own_endpoint_only():
    from aa_llm.provider import price

    # gpt-4o-mini: $0.15 and $0.60 per million input and output tokens: 20 x 0.15e-6 + 30 x 0.6e-6
    assert price("openai/gpt-4o-mini", None, 20, 30) == pytest.approx(2.1e-5)
    assert price("openai/gpt-4o-mini", "https://api.openai.com/v1", 20, 30) == pytest.approx(2.1e-5)
    # claude-haiku-4-5: $1 and $5 per million: 20 x 1e-6 + 30 x 5e-6
    assert price("anthropic/claude-haiku-4-5", "https://api.anthropic.com", 20, 30) == pytest.approx(1.7e-4)
    assert price("openai/gpt-4o-mini", "http://127.0.0.1:8000/v1", 20, 30) is None
    assert price("anthropic/claude-haiku-4-5", "https://proxy.example.com", 20, 30) is None
    assert price("openai/a-model-litellm-has-no-price-for", None, 20, 30) is None


def test_malformed_json_is_asked_again(tmp_path):
    calls = []

    def reply(body):
        calls.append(1)
        return (200, {}, completion("Sure! Here are prompts: mug, mug")) if len(calls) == 1 else answer(varied("mug"))

    with ChatServer(reply) as server:
        p = prompter(server.url, tmp_path)
        assert len(p.prompts(["mug"], "photo", per_class=3, seed=0)) == 3
    assert p.usage()["requests"] == 2


def test_a_reask_changes_the_seed_so_a_deterministic_server_answers_differently(tmp_path):
    first = {}

    def reply(body):  # the same request always gets the same answer: malformed for the first one asked
        first.setdefault("request", (body["seed"], body["temperature"]))
        return (200, {}, completion("not json")) if (body["seed"], body["temperature"]) == first["request"] else answer(varied("mug"))

    with ChatServer(reply) as server:
        assert len(prompter(server.url, tmp_path, retries=1).prompts(["mug"], "photo", 3, 0)) == 3
    (a, b) = server.requests
    assert a["seed"] != b["seed"] and (a["temperature"], b["temperature"]) == (1.0, 0.9)


def test_reasks_move_the_temperature_by_a_tenth_within_range_and_draw_new_seeds():
    from aa_llm.prompter import reask

    assert [reask(1.0, 0, 0, k)[0] for k in range(4)] == [1.0, 0.9, 0.8, 0.7]
    assert [reask(0.0, 0, 0, k)[0] for k in range(3)] == [0.0, 0.1, 0.2]  # greedy decoding: a seed alone changes nothing
    assert [reask(0.15, 0, 0, k)[0] for k in range(3)] == [0.15, 0.05, 0.35]
    seeds = {reask(1.0, s, r, k)[1] for s in range(3) for r in range(3) for k in range(3)}
    assert len(seeds) == 27 and all(0 <= x < 2**31 for x in seeds)


def test_an_anthropic_model_is_sent_no_seed_and_a_reask_moves_its_temperature(tmp_path):
    first = {}

    def reply(body):  # Anthropic's API refuses a seed (MessagesServer checks); the same request gets the same answer
        first.setdefault("temperature", body["temperature"])
        if body["temperature"] == first["temperature"]:
            return 200, {}, message("Here are some prompts: a mug, another mug")
        return 200, {}, message(json.dumps({"prompts": varied("mug")}))

    with MessagesServer(reply) as server:
        p = prompter(server.url, tmp_path, model="anthropic/claude-haiku-4-5", retries=1)
        assert [x.text for x in p.prompts(["mug"], "photo", 3, 0)] == varied("mug")
    assert server.paths == ["/v1/messages"] * 2 and all(h["x-api-key"] == ANTHROPIC_KEY for h in server.headers)
    assert [r["temperature"] for r in server.requests] == [1.0, 0.9] and all(r["max_tokens"] == 4096 for r in server.requests)
    assert p.usage()["prompt_tokens"] == 40 and p.usage()["cost_usd"] is None  # a local server: no hosted price


def test_a_provider_without_json_mode_is_sent_none_and_its_answer_is_read_from_prose(tmp_path):
    def reply(body):  # Cohere's v2 chat API; litellm has no JSON mode for it
        text = "Sure! Here they are:\n```json\n" + json.dumps({"prompts": varied("mug")}) + "\n```\nEnjoy."
        usage = {"billed_units": {"input_tokens": 20, "output_tokens": 30}, "tokens": {"input_tokens": 21, "output_tokens": 31}}
        content = [{"type": "text", "text": text}]
        return 200, {}, {"id": "c1", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": content}, "usage": usage}

    with ChatServer(reply) as server:
        p = prompter(server.url.removesuffix("/v1") + "/v2/chat", tmp_path, model="cohere_chat/command-r")
        assert [x.text for x in p.prompts(["mug"], "photo", 3, 0)] == varied("mug")
    (request,) = server.requests
    assert server.paths == ["/v2/chat"] and server.headers[0]["Authorization"] == f"Bearer {COHERE_KEY}"
    assert "response_format" not in request and request["max_tokens"] == 4096 and isinstance(request["seed"], int)
    assert p.usage()["prompt_tokens"] == 21 and p.usage()["completion_tokens"] == 31


def test_malformed_json_every_time_is_reported(tmp_path):
    with ChatServer(lambda body: (200, {}, completion("not json"))) as server:
        with pytest.raises(AAError, match="was not the JSON asked for, 2 times"):
            prompter(server.url, tmp_path, retries=1).prompts(["mug"], "photo", per_class=3, seed=0)


def test_duplicates_and_prompts_without_their_category_are_dropped_and_topped_up(tmp_path):
    rounds = []

    def reply(body):
        rounds.append(1)
        if len(rounds) == 1:  # one good, an exact and a near duplicate of it, one without the category
            good = "a mug on a wooden desk at dawn"
            return answer([good, good, "A mug on the wooden desk at dawn", "a cup of tea"])
        return answer(["a mug in a cluttered garage, top view", "a mug under neon light"])

    with ChatServer(reply) as server:
        p = prompter(server.url, tmp_path)
        texts = [x.text for x in p.prompts(["mug"], "photo", per_class=3, seed=0)]
    assert texts == ["a mug on a wooden desk at dawn", "a mug in a cluttered garage, top view", "a mug under neon light"]
    usage = p.usage()
    assert usage["dropped_duplicate"] == 2 and usage["dropped_missing_category"] == 1 and usage["requests"] == 2


def test_synonyms_count_as_naming_the_category(tmp_path):
    with ChatServer(lambda body: answer(["a bicycle by a lake", "a bike in the rain"])) as server:
        texts = [x.text for x in prompter(server.url, tmp_path, synonyms={"bike": ["bicycle"]}).prompts(["bike"], "photo", 2, 0)]
    assert texts == ["a bicycle by a lake", "a bike in the rain"]


def test_an_answer_cut_at_max_tokens_stops_at_once_naming_the_option(tmp_path):
    cut = completion('{"prompts": ["a mug on a wooden desk at da')
    cut["choices"][0]["finish_reason"] = "length"
    with ChatServer(lambda body: (200, {}, cut)) as server:
        with pytest.raises(AAError, match=r"cut off at prompts.max_tokens \(50 tokens\); raise prompts.max_tokens"):
            prompter(server.url, tmp_path, max_tokens=50).prompts(["mug"], "photo", 3, 0)
    assert len(server.requests) == 1 and server.requests[0]["max_tokens"] == 50


def test_429_waits_for_retry_after(tmp_path):
    calls = []

    def reply(body):
        calls.append(time.perf_counter())
        return (429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}) if len(calls) == 1 else answer(varied("mug"))

    with ChatServer(reply) as server:
        assert len(prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0)) == 3
    assert calls[1] - calls[0] >= 0.9


def test_a_long_retry_after_is_capped(tmp_path):
    from aa_llm.client import ask

    calls = []

    def reply(body):
        calls.append(time.perf_counter())
        return (429, {"Retry-After": "30"}, {"error": {"message": "slow down"}}) if len(calls) == 1 else answer(varied("mug"))

    with ChatServer(reply) as server:
        ask("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], api_base=server.url, temperature=1.0, seed=0,
            max_tokens=100, timeout=5, retries=1, max_wait=0.2)  # fmt: skip
    assert 0.2 <= calls[1] - calls[0] < 2  # not the 30 s asked: at most 1.25 x max_wait, plus the request


def test_waits_are_jittered_and_capped():
    import random

    from aa_llm.client import pause

    rng = random.Random(0)
    for attempt, d in enumerate([1, 2, 4, 8, 10, 10]):  # backoff 1 s doubling, capped at 10 s
        ratios = [pause(attempt, 1.0, 10.0, rng=rng) / d for _ in range(200)]
        assert 1 <= min(ratios) < 1.02 and 1.23 < max(ratios) <= 1.25  # spread over [d, 1.25 d]
    assert 3 <= pause(0, 1.0, 10.0, retry_after=3, rng=rng) <= 3.75  # the server's Retry-After, jittered upwards
    assert 10 <= pause(0, 1.0, 10.0, retry_after=3600, rng=rng) <= 12.5  # and capped


def test_an_answer_slower_than_the_timeout_fails_with_one_line(tmp_path):
    def reply(body):
        time.sleep(2)
        return answer(varied("mug"))

    with ChatServer(reply) as server:
        with pytest.raises(AAError, match=r"did not answer within 0.5 s .*raise prompts.timeout"):
            prompter(server.url, tmp_path, timeout=0.5, retries=0).prompts(["mug"], "photo", 3, 0)


def test_a_500_is_retried_then_reported(tmp_path):
    with ChatServer(lambda body: (500, {}, {"error": {"message": "the model crashed"}})) as server:
        with pytest.raises(AAError, match="the LLM failed .*the model crashed"):
            prompter(server.url, tmp_path, retries=1).prompts(["mug"], "photo", 3, 0)
        assert len(server.requests) == 2


def test_a_password_inside_the_api_base_is_used_but_never_shown(tmp_path):
    with ChatServer(lambda body: (500, {}, {"error": {"message": "the model crashed"}})) as server:
        with pytest.raises(AAError) as caught:
            prompter(with_password(server.url), tmp_path, retries=0).prompts(["mug"], "photo", 3, 0)
    assert server.headers[0]["Authorization"] == "Basic " + base64.b64encode(f"proxy-user:{PASSWORD}".encode()).decode()
    assert f"http://***@127.0.0.1:{server.url.split(':')[2]}" in str(caught.value) and PASSWORD not in str(caught.value)


def test_a_refused_parameter_is_reported_as_one_never_as_a_key(tmp_path):
    body = {"error": {"message": "Unsupported parameter: 'seed' is not supported with this model.", "type": "invalid_request_error"}}
    with ChatServer(lambda _: (400, {}, body)) as server:
        with pytest.raises(AAError) as caught:
            prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0)
    message = str(caught.value)
    assert "rejected the request" in message and "Unsupported parameter: 'seed'" in message and "key" not in message
    assert len(server.requests) == 1


def test_a_model_string_litellm_cannot_route_and_a_blanked_api_base_are_refused_before_any_request(tmp_path):
    with pytest.raises(AAError, match="names no provider litellm knows; write it as provider/model"):
        prompter(None, tmp_path, model="no-such-provider/some-model")
    with pytest.raises(AAError, match="has its credentials blanked .*--set prompts.api_base"):  # as config.yaml records it
        prompter("http://***@127.0.0.1:8000/v1", tmp_path)


def test_a_401_stops_at_once_and_never_echoes_the_key(tmp_path):
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    with ChatServer(lambda _: (401, {}, body)) as server:
        with pytest.raises(AAError) as caught:
            prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0)
        assert len(server.requests) == 1
    assert "refused the request" in str(caught.value) and KEY not in str(caught.value) and "SECRET" not in str(caught.value)


def test_the_cache_key_carries_a_format_version(tmp_path, monkeypatch):
    import aa_llm.cache

    with ChatServer(lambda body: answer(varied(category_of(body)))) as server:
        first = prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0)
        assert prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0) == first and len(server.requests) == 1
        monkeypatch.setattr(aa_llm.cache, "FORMAT", aa_llm.cache.FORMAT + 1)  # entries written before are not read
        prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0)
        assert len(server.requests) == 2


def test_the_cache_answers_with_the_server_gone_and_refresh_asks_again(tmp_path):
    with ChatServer(lambda body: answer(varied(category_of(body)))) as server:
        first = prompter(server.url, tmp_path).prompts(CATEGORIES, "photo", 3, 0)
    again = prompter(server.url, tmp_path)  # the server is stopped: only the cache can answer
    assert again.prompts(CATEGORIES, "photo", 3, 0) == first
    assert again.usage()["requests"] == 0 and again.usage()["cached"] == 2
    with pytest.raises(AAError, match="the LLM failed"):
        prompter(server.url, tmp_path, refresh=True, retries=0).prompts(CATEGORIES, "photo", 3, 0)
    with ChatServer(lambda body: answer(varied(category_of(body)))) as server:
        assert prompter(server.url, tmp_path).prompts(CATEGORIES, "photo", 3, 1) == first  # the seed is in the key:
    assert len(server.requests) == 2  # a new seed asked again


def test_end_to_end_on_the_default_task_then_from_the_cache_with_no_key_or_password_anywhere(tmp_path, tiny_config):
    from aa_results.report import write_report

    cache = tmp_path / "cache"
    env = {"OPENAI_API_KEY": KEY, "AA_CACHE": str(cache), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = tmp_path / "run"
    with ChatServer(lambda body: answer(varied(category_of(body)))) as server:
        args = ("run", "--config", tiny_config, "--out", out, "--prompter", "llm", "--set", "prompts.model=openai/gpt-4o-mini",
                "--set", f"prompts.api_base={with_password(server.url)}", "--set", "prompts.per_class=3", "--ssl", "none")  # fmt: skip
        first = aa(*args, env=env, check=0)
        assert len(server.requests) == 10  # one per digit
    assert server.headers[0]["Authorization"] == "Basic " + base64.b64encode(f"proxy-user:{PASSWORD}".encode()).decode()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompts"]["requests"] == 10 and metrics["prompts"]["completion_tokens"] == 300
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and all(r["label"] in r["text"] for r in rows)
    recorded = yaml.safe_load((out / "config.yaml").read_text())["prompts"]["api_base"]
    assert recorded == server.url.replace("http://", "http://***@")
    report = write_report(out).read_text()
    assert "http://***@127.0.0.1" in report
    # a new run folder with the same settings, the server gone: the cache answers
    second = aa(*[str(a).replace(str(out), str(tmp_path / "again")) for a in args], env=env, check=0)
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["prompts"]["requests"] == 0
    searched = [first.stdout, first.stderr, second.stdout, second.stderr]
    for folder in (out, tmp_path / "again", cache):
        searched += [p.read_bytes().decode(errors="replace") for p in folder.rglob("*") if p.is_file()]
    assert not any(KEY in text or "SECRET" in text or PASSWORD in text for text in searched)


def test_aa_run_with_an_anthropic_model_writes_prompts_and_rereads_its_folder_without_the_password(tmp_path, tiny_config):
    from aa_core.config import load_config
    from aa_core.fingerprints import fingerprints
    from aa_core.pipeline import context, read_config
    from aa_core.run_folder import RunFolder

    cache, out = tmp_path / "cache", tmp_path / "run"
    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "AA_CACHE": str(cache)}
    with MessagesServer(lambda body: (200, {}, message(json.dumps({"prompts": varied(category_of(body))})))) as server:
        first = aa("run", "--config", tiny_config, "--out", out, "--prompter", "llm", "--set", "prompts.model=anthropic/claude-haiku-4-5",
                   "--set", f"prompts.api_base={with_password(server.url)}", "--until", "prompts", env=env, check=0)  # fmt: skip
    assert server.paths == ["/v1/messages"] * 10 and not any("seed" in r for r in server.requests)  # else a 400, as Anthropic's
    assert all(h["x-api-key"] == ANTHROPIC_KEY for h in server.headers)
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and all(r["label"] in r["text"] for r in rows)
    usage = json.loads((out / "prompts_usage.json").read_text())
    assert usage["requests"] == 10 and usage["completion_tokens"] == 300 and usage["cost_usd"] is None
    assert yaml.safe_load((out / "config.yaml").read_text())["prompts"]["api_base"] == server.url.replace("http://", "http://***@")
    # a stage command (aa generate RUN) reads the config back from config.yaml, password blanked: the prompts stage holds
    folder = RunFolder(out)
    read_back = context(load_config(base=read_config(folder)), out)
    assert folder.is_current("prompts", fingerprints(read_back, ["prompts"])["prompts"])
    searched = [first.stdout, first.stderr]
    searched += [p.read_bytes().decode(errors="replace") for folder in (out, cache) for p in folder.rglob("*") if p.is_file()]
    assert not any(ANTHROPIC_KEY in text or PASSWORD in text for text in searched)


def test_a_refused_request_exits_non_zero_with_one_line(tmp_path, tiny_config):
    env = {"OPENAI_API_KEY": KEY, "AA_CACHE": str(tmp_path / "cache")}
    with ChatServer(lambda _: (401, {}, {"error": {"message": f"bad key {KEY}"}})) as server:
        proc = aa("run", "--config", tiny_config, "--out", tmp_path / "run", "--prompter", "llm", "--set", "prompts.model=openai/m",
                  "--set", f"prompts.api_base={server.url}", env=env)  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused the request" in errors[0] and KEY not in proc.stderr + proc.stdout


def test_requests_run_concurrently_up_to_the_limit(tmp_path):
    import threading

    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def reply(body):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return answer(varied(category_of(body)))

    with ChatServer(reply) as server:
        prompts = prompter(server.url, tmp_path, concurrency=2).prompts(["mug", "bike", "pen", "lamp"], "photo", 3, 0)
    assert len(prompts) == 12 and state["most"] == 2


def test_a_hostile_answer_is_asked_again_then_one_line_never_a_recursion(tmp_path):
    """`{"a":` 3,000 times (within max_tokens), brackets nesting 40 deep, prose quotes around the
    object: parsed without recursion, in one pass; an answer with no usable object is asked again."""
    from aa_llm.answer import MalformedAnswer, parse

    with pytest.raises(MalformedAnswer, match="no JSON object in the answer"):
        parse('{"a":' * 3000)
    with pytest.raises(MalformedAnswer, match="nests 41 levels deep, more than 16"):
        parse('{"prompts": ["a mug"], "x": ' + "[" * 40 + "]" * 40 + "}")
    assert parse('He said "look {here}" and: {"prompts": ["a mug"]}') == ["a mug"]
    assert parse('{unclosed {"prompts": ["a mug", "a \\"red\\" mug {x}"]}') == ["a mug", 'a "red" mug {x}']
    with ChatServer(lambda body: (200, {}, completion('{"a":' * 3000))) as server:
        with pytest.raises(AAError, match="was not the JSON asked for, 2 times"):
            prompter(server.url, tmp_path, retries=1).prompts(["mug"], "photo", per_class=3, seed=0)


def test_a_prompt_longer_than_the_limit_is_dropped_and_counted(tmp_path):
    long = "a mug " + "very " * 300
    with ChatServer(lambda body: answer([long, "a mug on a desk", "a mug in the rain", "a mug at night"])) as server:
        p = prompter(server.url, tmp_path)
        texts = [x.text for x in p.prompts(["mug"], "photo", per_class=3, seed=0)]
    assert long.strip() not in texts and len(texts) == 3 and p.usage()["dropped_too_long"] == 1
