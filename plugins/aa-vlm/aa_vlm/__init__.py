"""Vision-language models for Adapt Anything (``aa.vlms``): ``clip``, any checkpoint transformers
opens as a zero-shot image classifier."""
