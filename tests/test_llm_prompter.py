"""The llm prompter against a real OpenAI-compatible server on 127.0.0.1, through litellm."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import aa
from openai_server import ChatServer, completion

from aa_core.api import AAError, PrompterContext

KEY = "sk-aa-test-SECRET-0123456789abcdef"
CATEGORIES = ["mug", "bike"]


@pytest.fixture(autouse=True)
def key_in_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def category_of(body: dict) -> str:
    return re.search(r"shows one (.+?) as it appears", body["messages"][-1]["content"]).group(1)


def answer(prompts: list[str]) -> tuple[int, dict, dict]:
    return 200, {}, completion(json.dumps({"prompts": prompts}))


def varied(category: str, n: int = 3) -> list[str]:
    scenes = ["on a wooden desk at dawn", "in a cluttered garage, top view", "as a watercolor sketch by a window", "under neon light"]
    return [f"a {category} {scene}" for scene in scenes[:n]]


def prompter(server_url: str | None, cache: Path, **options):
    from aa_llm.prompter import LLMPrompter

    context = PrompterContext(model="openai/gpt-4o-mini", cache_dir=cache, run_dir=cache, is_main_process=True, description="Office items.")
    return LLMPrompter(LLMPrompter.Options(api_base=server_url, **options), context)


def test_a_normal_answer_gives_n_prompts_per_category_with_tokens_and_cost(tmp_path):
    with ChatServer(lambda body: answer(varied(category_of(body)))) as server:
        p = prompter(server.url, tmp_path)
        prompts = p.prompts(CATEGORIES, "photo", per_class=3, seed=0)
    assert [x.label for x in prompts] == ["mug"] * 3 + ["bike"] * 3
    assert all(x.label in x.text for x in prompts)
    usage = p.usage()
    assert usage["requests"] == 2 and usage["prompt_tokens"] == 40 and usage["completion_tokens"] == 60
    assert usage["cost_usd"] > 0  # litellm knows gpt-4o-mini's price
    request = server.requests[0]
    assert request["response_format"] == {"type": "json_object"} and "Office items." in request["messages"][0]["content"]


def test_malformed_json_is_asked_again(tmp_path):
    calls = []

    def reply(body):
        calls.append(1)
        return (200, {}, completion("Sure! Here are prompts: mug, mug")) if len(calls) == 1 else answer(varied("mug"))

    with ChatServer(reply) as server:
        p = prompter(server.url, tmp_path)
        assert len(p.prompts(["mug"], "photo", per_class=3, seed=0)) == 3
    assert p.usage()["requests"] == 2


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


def test_429_waits_for_retry_after(tmp_path):
    calls = []

    def reply(body):
        calls.append(time.perf_counter())
        return (429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}) if len(calls) == 1 else answer(varied("mug"))

    with ChatServer(reply) as server:
        assert len(prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0)) == 3
    assert calls[1] - calls[0] >= 0.9


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


def test_a_401_stops_at_once_and_never_echoes_the_key(tmp_path):
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    with ChatServer(lambda _: (401, {}, body)) as server:
        with pytest.raises(AAError) as caught:
            prompter(server.url, tmp_path).prompts(["mug"], "photo", 3, 0)
        assert len(server.requests) == 1
    assert "refused the request" in str(caught.value) and KEY not in str(caught.value) and "SECRET" not in str(caught.value)


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


def test_end_to_end_on_the_default_task_then_from_the_cache_with_no_key_anywhere(tmp_path, tiny_config):
    cache = tmp_path / "cache"
    env = {"OPENAI_API_KEY": KEY, "AA_CACHE": str(cache), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = tmp_path / "run"
    with ChatServer(lambda body: answer(varied(category_of(body)))) as server:
        args = ("run", "--config", tiny_config, "--out", out, "--prompter", "llm", "--set", "prompts.model=openai/gpt-4o-mini",
                "--set", f"prompts.api_base={server.url}", "--set", "prompts.per_class=3", "--ssl", "none")  # fmt: skip
        first = aa(*args, env=env, check=0)
        assert len(server.requests) == 10  # one per digit
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompts"]["requests"] == 10 and metrics["prompts"]["completion_tokens"] == 300
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and all(r["label"] in r["text"] for r in rows)
    # a new run folder with the same settings, the server gone: the cache answers
    second = aa(*[str(a).replace(str(out), str(tmp_path / "again")) for a in args], env=env, check=0)
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["prompts"]["requests"] == 0
    searched = [first.stdout, first.stderr, second.stdout, second.stderr]
    for folder in (out, tmp_path / "again", cache):
        searched += [p.read_bytes().decode(errors="replace") for p in folder.rglob("*") if p.is_file()]
    assert not any(KEY in text or "SECRET" in text for text in searched)


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
