"""One module per stage, run in this order: ``aa_core.stages.<name>``.

Each stage module has ``inputs(ctx)`` (what its fingerprint covers) and ``run(ctx)``.
"""

STAGE_NAMES = ("prompts", "generate", "adapt", "refine", "evaluate")
