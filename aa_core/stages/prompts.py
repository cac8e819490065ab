"""Stage 1a: text prompts naming each category in the target domain -> ``prompts.jsonl``.

Only the main process asks the prompter (an LLM costs money); the others read the file. What the
prompts cost goes to ``prompts_usage.json`` and from there into the metrics. A user may edit
``prompts.jsonl`` by hand (``aa run --until prompts``, edit, ``aa run``): this stage's fingerprint
covers its settings, not the file, so the edits stay; the generation's covers the file's content.
"""

from __future__ import annotations

import json

from aa_core.context import StageContext
from aa_core.contracts import PrompterContext
from aa_core.data.builtin import cache_dir
from aa_core.data.prompts import too_long, write_prompts
from aa_core.errors import AAError
from aa_core.run_folder import write_atomic


def run(ctx: StageContext) -> None:
    if not ctx.is_main:
        return
    cls, options = ctx.implementation("prompter")
    task = ctx.config.task
    context = PrompterContext(
        model=ctx.config.prompts.model,
        cache_dir=cache_dir() / "prompts",
        run_dir=ctx.folder.root,
        is_main_process=True,
        description=task.description,
    )
    prompter = cls(options, context)
    prompts = prompter.prompts(ctx.categories, task.domain, ctx.config.prompts.per_class, ctx.config.seed)
    labels = {p.label for p in prompts}
    missing = [c for c in ctx.categories if c not in labels]
    strays = labels - set(ctx.categories)
    if missing or strays:
        problem = f"no prompt for category '{missing[0]}'" if missing else f"a prompt for unknown category '{sorted(strays)[0]}'"
        raise AAError(f"prompter '{ctx.config.prompts.name}' wrote {problem}; fix the prompter or its options")
    for prompt in prompts:
        problem = too_long(prompt.text, prompt.label, f"prompter '{ctx.config.prompts.name}'")
        if problem:
            raise AAError(problem)
    write_prompts(ctx.folder.prompts, prompts)
    write_atomic(ctx.folder.prompts_usage, json.dumps(prompter.usage(), indent=2))
