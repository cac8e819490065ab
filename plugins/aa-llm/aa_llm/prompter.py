"""llm: a language model writes varied prompts that keep each category and the target domain.

For each category, one request asks for ``per_class`` prompts (``instruction``, with
``{n}``, ``{category}``, ``{domain}`` and ``{description}``); the answer must hold the JSON object
``{"prompts": [...]}``, at most ``max_tokens`` long. A malformed one is asked again, ``retries``
times, each time with another seed and the temperature moved by 0.1 (``reask``), so that a
server that answers a request the same way every time answers differently. Prompts that do not
name the category (or a synonym from ``synonyms``) and exact or near duplicates are dropped
(``aa_llm.answer``); while some are missing, another round asks again, up to ``rounds``
requests per category. Requests run ``concurrency`` at a time through litellm (``aa_llm.client``:
only the parameters the provider takes, jittered back-off on 429 and 5xx, ``timeout`` per request).

Every answer is cached on disk (``aa_llm.cache``) under the machine's cache folder, keyed by what
shaped it: a rerun, or a new run with the same settings, asks nothing and gets the same prompts,
with the server gone; ``refresh=true`` asks again. Token counts and cost (at litellm's price for
the model, on the provider's own endpoint only) are reported to the run's metrics. Keys come from
the environment only: the options have no field for one, and a password inside ``api_base`` is
blanked wherever the URL is shown or recorded.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import Field, field_validator

from aa_core.api import AAError, Options, Prompt, Prompter, blank_credentials
from aa_llm.answer import MalformedAnswer, keep, parse
from aa_llm.cache import AnswerCache, key_of

logger = logging.getLogger("aa")

INSTRUCTION = (
    "Write {n} different text-to-image prompts. Each prompt shows one {category} as it appears in this "
    "domain: {domain}. {description}\n"
    'Every prompt must contain the words "{category}". Vary the setting, viewpoint, lighting, composition '
    "and details from prompt to prompt while keeping the domain. Answer with a JSON object of the form "
    '{{"prompts": ["...", "..."]}} and nothing else.'
)


class LLMOptions(Options):
    api_base: str | None = Field(None, description="where requests go (a local server, a proxy); none: the provider's own endpoint")
    instruction: str = Field(INSTRUCTION, description="the request; uses {n}, {category}, {domain}, {description}")
    temperature: float = Field(1.0, ge=0, le=2, description="sampling temperature (Anthropic takes 0 to 1)")
    max_tokens: int = Field(4096, ge=1, description="the most tokens an answer may take (an answer cut there is an error)")
    concurrency: int = Field(4, ge=1, description="requests in flight at once")
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    retries: int = Field(3, ge=0, description="retries of a failed or malformed request")
    rounds: int = Field(3, ge=1, description="requests per category while prompts are missing")
    synonyms: dict[str, list[str]] = Field(default_factory=dict, description="category -> other names a prompt may use")
    near_duplicate: float = Field(0.8, gt=0, le=1, description="word overlap (Jaccard) from which two prompts are one")
    refresh: bool = Field(False, description="ask again instead of reading the cache (the new answers are cached)")
    cache_dir: str | None = Field(None, description="where answers are cached; none: the machine's adapt-anything cache")

    @field_validator("instruction")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        for name in ("{n}", "{category}"):
            if name not in value:
                raise ValueError(f"the instruction must contain {name}")
        return value


def reask(temperature: float, seed: int, round_: int, attempt: int) -> tuple[float, int]:
    """The temperature and seed of a request's ``attempt``-th asking (0: the first) in round ``round_``.

    The seed is a 31-bit hash of (seed, round, attempt); the temperature moves by ``0.1·attempt``,
    down while that stays at or above 0, else up: ``1.0 -> 0.9, 0.8``; ``0 -> 0.1, 0.2``. Either
    alone can fail to change an answer: a provider may take no seed (Anthropic), and a seed does
    not change greedy decoding at temperature 0.
    """
    digest = hashlib.sha256(f"{seed}/{round_}/{attempt}".encode()).digest()
    step = 0.1 * attempt
    moved = temperature - step if temperature - step >= 0 else temperature + step
    return round(moved, 6), int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class LLMPrompter(Prompter):
    """Prompts from any model litellm reaches, cached and costed."""

    Options = LLMOptions

    def __init__(self, options: LLMOptions, context):
        super().__init__(options, context)
        if not context.model:
            raise AAError(
                "the llm prompter needs a model: set prompts.model to a litellm model string (openai/gpt-4o-mini, ollama/llama3, ...)"
            )
        if options.api_base and "***" in options.api_base:
            raise AAError(
                "prompts.api_base has its credentials blanked (config.yaml never records them); "
                "give it again in full: --set prompts.api_base=..."
            )
        from aa_llm.provider import route

        route(context.model)  # a model string litellm cannot route fails here, before any request
        self.cache = AnswerCache(Path(options.cache_dir) if options.cache_dir else context.cache_dir / "llm")
        self.lock = threading.Lock()
        self.totals = {"requests": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                       "dropped_missing_category": 0, "dropped_duplicate": 0, "dropped_too_long": 0}  # fmt: skip
        self.priced = True

    def prompts(self, categories: Sequence[str], domain: str, per_class: int, seed: int) -> list[Prompt]:
        with ThreadPoolExecutor(self.options.concurrency) as pool:
            lists = list(pool.map(lambda c: self.for_category(c, domain, per_class, seed), categories))
        return [Prompt(text=text, label=category) for category, texts in zip(categories, lists) for text in texts]

    def for_category(self, category: str, domain: str, n: int, seed: int) -> list[str]:
        kept: list[str] = []
        for round_ in range(self.options.rounds):
            if len(kept) >= n:
                break
            kept, dropped = keep(self.answer(category, domain, n, seed, round_), kept, category,
                                 self.options.synonyms.get(category, []), self.options.near_duplicate)  # fmt: skip
            with self.lock:
                for reason, count in dropped.items():
                    self.totals[f"dropped_{reason}"] += count
        if not kept:
            why = f"the LLM wrote no usable prompt for '{category}' in {self.options.rounds} rounds"
            raise AAError(f"{why}; add synonyms (prompts.synonyms) or change the instruction")
        if len(kept) < n:
            logger.warning("the LLM gave %d distinct prompts for '%s' of %d asked; the images cycle through them", len(kept), category, n)
        return kept[:n]

    def answer(self, category: str, domain: str, n: int, seed: int, round_: int) -> list[str]:
        """The prompts of one request: from the cache, or asked (and cached once well-formed)."""
        from aa_llm.client import LLMError, ask

        o, model = self.options, self.context.model
        description = getattr(self.context, "description", "") or ""
        text = o.instruction.format(n=n, category=category.replace("_", " "), domain=domain, description=description).strip()
        key = key_of({"model": model, "api_base": blank_credentials(o.api_base or ""), "instruction": text, "category": category,
                      "domain": domain, "n": n, "temperature": o.temperature, "seed": seed, "round": round_})  # fmt: skip
        cached = None if o.refresh else self.cache.get(key)
        if cached is not None:
            with self.lock:
                self.totals["cached"] += 1
            return parse(cached["text"])
        for attempt in range(o.retries + 1):
            temperature, request_seed = reask(o.temperature, seed, round_, attempt)
            reply = ask(model, [{"role": "user", "content": text}], api_base=o.api_base, temperature=temperature, seed=request_seed,
                        max_tokens=o.max_tokens, timeout=o.timeout, retries=o.retries)  # fmt: skip
            self.count(reply)
            if reply.truncated:
                why = f"the LLM's answer for '{category}' was cut off at prompts.max_tokens ({o.max_tokens} tokens)"
                raise LLMError(f"{why}; raise prompts.max_tokens or lower prompts.per_class") from None
            try:
                prompts = parse(reply.text)
            except MalformedAnswer as exc:
                if attempt == o.retries:
                    why = f"the LLM's answer for '{category}' was not the JSON asked for, {o.retries + 1} times ({exc})"
                    raise LLMError(f"{why}; try another model") from None
                continue
            self.cache.put(key, {"text": reply.text, "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens})
            return prompts
        raise AssertionError("unreachable")

    def count(self, reply) -> None:
        with self.lock:
            self.totals["requests"] += 1
            self.totals["prompt_tokens"] += reply.prompt_tokens
            self.totals["completion_tokens"] += reply.completion_tokens
            if reply.cost is None:
                self.priced = False
            else:
                self.totals["cost_usd"] += reply.cost

    def usage(self) -> dict:
        """Requests made and read from the cache, tokens, cost (none where the price is unknown), prompts dropped."""
        totals = dict(self.totals)
        totals["cost_usd"] = round(totals["cost_usd"], 6) if self.priced else None
        return totals
