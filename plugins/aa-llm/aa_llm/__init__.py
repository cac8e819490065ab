"""The ``llm`` prompter: prompts written by any language model litellm reaches."""
