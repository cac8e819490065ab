"""What litellm knows of the provider behind a model string: the parameters it takes, and where it lives.

* ``takes``: the optional OpenAI-style parameters (``seed``, ``response_format``, ``max_tokens``,
  ...) litellm can send to the provider. A request carries only those: Anthropic's API, for one,
  refuses a ``seed``.
* ``price``: what a reply cost, in USD, at litellm's price for the model, and only when the
  request went to the provider's own endpoint (no ``api_base``, or the one litellm would use).
  A local server that serves a model under a hosted name (``openai/gpt-4o-mini`` on vLLM)
  charges nothing the hosted price says; so do endpoints litellm cannot place: ``None``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from aa_core.api import AAError


def litellm_module():
    """litellm, with the price map it ships (no download on import) and its debug banner silenced."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def route(model: str) -> tuple[str, str]:
    """``(model name, provider)`` of a litellm model string; an error naming the fix when litellm knows no provider for it."""
    try:
        name, provider, _, _ = litellm_module().get_llm_provider(model)
    except Exception:  # litellm raises its BadRequestError, with a banner, for a string it cannot route
        raise AAError(
            f"prompts.model '{model}' names no provider litellm knows; "
            "write it as provider/model (openai/gpt-4o-mini, anthropic/claude-haiku-4-5, ollama/llama3)"
        ) from None
    return name, provider


def takes(model: str) -> frozenset[str]:
    """The optional parameters litellm sends to the provider of ``model``."""
    name, provider = route(model)
    return frozenset(litellm_module().get_supported_openai_params(model=name, custom_llm_provider=provider) or ())


def own_endpoint(model: str, api_base: str | None) -> bool:
    """Whether requests to ``api_base`` reach the provider itself (same scheme, host and port as litellm's default)."""
    if api_base is None:
        return True
    name, provider = route(model)  # imports litellm as litellm_module sets it up
    from litellm.types.utils import LlmProviders
    from litellm.utils import ProviderConfigManager

    try:
        info = ProviderConfigManager.get_provider_model_info(model=name, provider=LlmProviders(provider))
        default = info.get_api_base(None) if info is not None else None
    except Exception:  # a provider litellm has no endpoint record for
        return False
    here, there = urlsplit(api_base), urlsplit(default or "")
    return bool(default) and (here.scheme, here.hostname, here.port) == (there.scheme, there.hostname, there.port)


def price(model: str, api_base: str | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for the tokens at litellm's price of ``model``: prompt·(input price) + completion·(output price).

    ``None`` for a model litellm has no price for, and for any endpoint but the provider's own.
    """
    if not own_endpoint(model, api_base):
        return None
    name, provider = route(model)
    try:
        prompt_cost, completion_cost = litellm_module().cost_per_token(
            model=name, custom_llm_provider=provider, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for a model it has no price for
        return None
    return float(prompt_cost + completion_cost)
