"""One chat request through litellm, with the retries a hosted API needs.

* 429: wait for ``Retry-After`` when the server sends it, else back off exponentially;
* 5xx, connection errors and time-outs: back off and retry;
* 401/403, a bad request, an unknown model, missing credentials: stop at once.

After ``retries`` retries the request fails with an ``LLMError``: one line naming the cause and
the fix, with every secret redacted. litellm's own retries are off so that these are the only
ones, and its debug banner is silenced.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download on import

from aa_core.api import AAError  # noqa: E402
from aa_llm.secrets import redact  # noqa: E402


class LLMError(AAError):
    """A request that cannot succeed (or did not after its retries)."""


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # USD, where litellm knows the model's price


def _litellm():
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def retry_after(exc: Exception) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    try:
        return float(headers.get("retry-after")) if headers is not None and headers.get("retry-after") else None
    except (TypeError, ValueError):
        return None


def describe(exc: Exception, model: str, api_base: str | None) -> str:
    where = f"{model} at {api_base}" if api_base else model
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    detail = detail.split(" - ", 1)[-1][:200]
    return f"{where}: {detail}"


def ask(
    model: str,
    messages: list[dict],
    *,
    api_base: str | None,
    temperature: float,
    seed: int,
    timeout: float,
    retries: int,
    backoff: float = 1.0,
) -> Reply:
    litellm = _litellm()
    fatal = (litellm.AuthenticationError, litellm.PermissionDeniedError, litellm.BadRequestError, litellm.NotFoundError)
    for attempt in range(retries + 1):
        try:
            response = litellm.completion(
                model=model, messages=messages, api_base=api_base, temperature=temperature, seed=seed, timeout=timeout,
                response_format={"type": "json_object"}, num_retries=0, max_retries=0,
            )  # fmt: skip
        except fatal as exc:
            why = describe(exc, model, api_base)
            raise LLMError(f"the LLM refused the request ({why}); check the model name and its key in the environment") from None
        except litellm.RateLimitError as exc:
            if attempt == retries:
                why = describe(exc, model, api_base)
                raise LLMError(f"the LLM kept rate-limiting ({why}); lower prompts.concurrency or retry later") from None
            time.sleep(retry_after(exc) or backoff * 2**attempt)
            continue
        except litellm.Timeout:
            if attempt == retries:
                why = f"the LLM did not answer within {timeout:g} s ({model})"
                raise LLMError(f"{why}; raise prompts.timeout or check the server") from None
            time.sleep(backoff * 2**attempt)
            continue
        except (litellm.APIConnectionError, litellm.InternalServerError, litellm.ServiceUnavailableError, litellm.APIError) as exc:
            text = str(exc)
            if "credentials" in text.lower() or "api_key" in text.lower():
                raise LLMError(
                    f"no API key for {model}: set the provider's key in the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...; "
                    "any value for a local server that needs none)"
                ) from None
            if attempt == retries:
                raise LLMError(f"the LLM failed ({describe(exc, model, api_base)}); retry later or check prompts.api_base") from None
            time.sleep(backoff * 2**attempt)
            continue
        usage = response.usage
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # litellm raises for models it has no price for
            cost = None
        text = response.choices[0].message.content or ""
        return Reply(text, int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0), cost)
    raise AssertionError("unreachable")
