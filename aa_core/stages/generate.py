"""Stage 1b: render the synthetic source from the prompts -> ``source/`` with ``metadata.jsonl``.

The main process removes images the current plan does not name (made with another seed,
prompt, generator or option); then the missing images are shared out between processes (one
per GPU under ``accelerate launch``) and rendered in batches. Each image is written under its
final name only once complete, so a rerun after an interruption renders only what is missing.
"""

from __future__ import annotations

import os

from aa_core.contracts import GeneratorContext
from aa_core.data.synthetic import plan, remove_strays, write_metadata
from aa_core.errors import AAError
from aa_core.run_folder import fingerprint
from aa_core.stages import prompts as prompts_stage
from aa_core.stages.context import StageContext
from aa_core.training.progress import progress_bar


def inputs(ctx: StageContext) -> dict:
    prompts = ctx.folder.prompts
    return {
        "seed": ctx.config.seed,
        "generator": ctx.config.generator.model_dump(),
        "impl": ctx.version("generator"),
        # the prompts as written, hand edits included (empty until the prompts stage has run)
        "prompts": fingerprint(prompts.read_text()) if prompts.exists() else "",
    }


def run(ctx: StageContext) -> None:
    config = ctx.config.generator
    accelerator = ctx.accelerator
    cls, options = ctx.implementation("generator")
    maker = {**ctx.version("generator"), "model": config.model, "options": options.model_dump(mode="json")}
    images = plan(prompts_stage.read(ctx), config.images_per_class, ctx.config.seed, maker)
    if ctx.is_main:
        remove_strays(ctx.folder.source, images)
    accelerator.wait_for_everyone()
    todo = [image for image in images if not (ctx.folder.source / image.file_name).exists()]

    generator = cls(
        options,
        GeneratorContext(config.model, ctx.categories, accelerator.device, ctx.config.train.mixed_precision),
    )
    try:
        with accelerator.split_between_processes(todo) as mine:
            bar = progress_bar(total=len(mine), desc="generate", disable=not accelerator.is_local_main_process)
            for start in range(0, len(mine), config.batch_size):
                batch = mine[start : start + config.batch_size]
                rendered = generator.generate([i.prompt for i in batch], [i.seed for i in batch])
                if len(rendered) != len(batch):
                    raise AAError(f"generator '{config.name}' returned {len(rendered)} images for {len(batch)} prompts")
                for item, picture in zip(batch, rendered):
                    path = ctx.folder.source / item.file_name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}")
                    picture.save(tmp, format="PNG")
                    os.replace(tmp, path)
                bar.update(len(batch))
            bar.close()
    finally:
        generator.close()
    accelerator.wait_for_everyone()
    if ctx.is_main:
        write_metadata(ctx.folder.source, images)
