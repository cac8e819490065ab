"""One chat request through litellm, with the retries a hosted API needs.

The request carries ``temperature``, ``seed``, ``max_tokens`` and JSON mode
(``response_format``) only where litellm says the provider takes them (``aa_llm.provider``).

* 429: wait for ``Retry-After`` when the server sends it, else back off exponentially;
* 5xx, connection errors and time-outs: back off and retry;
* 401/403: stop at once, naming the key; an unknown model: naming the model; any other refused
  request (400, a parameter the provider does not take): with the provider's reason.

Each wait is jittered and capped (``pause``). After ``retries`` retries the request fails with an
``LLMError``: one line naming the cause and the fix, with every secret redacted. litellm's own
retries are off so that these are the only ones, and its debug banner is silenced.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from aa_core.api import AAError, blank_credentials
from aa_llm.provider import litellm_module, price, takes
from aa_llm.secrets import redact

MAX_WAIT = 60.0  # seconds: the longest pause before a retry, whatever Retry-After says (plus jitter)


class LLMError(AAError):
    """A request that cannot succeed (or did not after its retries)."""


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # USD at the provider's price; None off its own endpoint or where litellm has no price
    truncated: bool = False  # the answer stopped at max_tokens


def retry_after(exc: Exception) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    try:
        return float(headers.get("retry-after")) if headers is not None and headers.get("retry-after") else None
    except (TypeError, ValueError):
        return None


def pause(attempt: int, backoff: float, max_wait: float, retry_after: float | None = None, rng=random) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first): ``d·(1 + u/4)``, ``u ~ U(0, 1)``.

    ``d = min(Retry-After, max_wait)`` when the server sends one, else ``min(backoff·2^attempt, max_wait)``:
    never sooner than the server asked (up to the cap), never longer than ``1.25·max_wait``, and
    requests refused together (``concurrency`` > 1) come back spread over a quarter of the wait.
    """
    d = min(retry_after if retry_after is not None else backoff * 2**attempt, max_wait)
    return d * (1 + rng.random() / 4)


def describe(exc: Exception, model: str, api_base: str | None) -> str:
    where = f"{model} at {blank_credentials(api_base)}" if api_base else model
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    detail = detail.split(" - ", 1)[-1][:200]
    return f"{where}: {detail}"


def request(model: str, temperature: float, seed: int, max_tokens: int) -> dict:
    """The optional parameters of a request to ``model``: those its provider takes."""
    wanted = {"temperature": temperature, "seed": seed, "max_tokens": max_tokens, "response_format": {"type": "json_object"}}
    supported = takes(model)
    return {name: value for name, value in wanted.items() if name in supported}


def ask(
    model: str,
    messages: list[dict],
    *,
    api_base: str | None,
    temperature: float,
    seed: int,
    max_tokens: int,
    timeout: float,
    retries: int,
    backoff: float = 1.0,
    max_wait: float = MAX_WAIT,
) -> Reply:
    litellm = litellm_module()
    optional = request(model, temperature, seed, max_tokens)
    for attempt in range(retries + 1):
        try:
            response = litellm.completion(
                model=model, messages=messages, api_base=api_base, timeout=timeout, num_retries=0, max_retries=0, **optional
            )
        except (litellm.AuthenticationError, litellm.PermissionDeniedError) as exc:
            why = describe(exc, model, api_base)
            raise LLMError(f"the LLM refused the request ({why}); check the provider's key in the environment") from None
        except litellm.NotFoundError as exc:
            raise LLMError(f"the LLM does not know the model ({describe(exc, model, api_base)}); check prompts.model") from None
        except (litellm.BadRequestError, litellm.UnprocessableEntityError) as exc:  # UnsupportedParamsError: a parameter, not the key
            why = describe(exc, model, api_base)
            raise LLMError(f"the LLM rejected the request ({why}); check prompts.model and the options sent with it") from None
        except litellm.RateLimitError as exc:
            if attempt == retries:
                why = describe(exc, model, api_base)
                raise LLMError(f"the LLM kept rate-limiting ({why}); lower prompts.concurrency or retry later") from None
            time.sleep(pause(attempt, backoff, max_wait, retry_after(exc)))
            continue
        except litellm.Timeout:
            if attempt == retries:
                why = f"the LLM did not answer within {timeout:g} s ({model})"
                raise LLMError(f"{why}; raise prompts.timeout or check the server") from None
            time.sleep(pause(attempt, backoff, max_wait))
            continue
        except (
            litellm.APIConnectionError, litellm.InternalServerError, litellm.ServiceUnavailableError, litellm.BadGatewayError,
            litellm.APIError,
        ) as exc:  # fmt: skip
            text = str(exc)
            if "credentials" in text.lower() or "api_key" in text.lower():
                raise LLMError(
                    f"no API key for {model}: set the provider's key in the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...; "
                    "any value for a local server that needs none)"
                ) from None
            if attempt == retries:
                raise LLMError(f"the LLM failed ({describe(exc, model, api_base)}); retry later or check prompts.api_base") from None
            time.sleep(pause(attempt, backoff, max_wait))
            continue
        usage, choice = response.usage, response.choices[0]
        prompt_tokens, completion_tokens = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
        cost = price(model, api_base, prompt_tokens, completion_tokens)
        return Reply(choice.message.content or "", prompt_tokens, completion_tokens, cost, truncated=choice.finish_reason == "length")
    raise AssertionError("unreachable")
