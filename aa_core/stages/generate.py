"""Stage 1b: render the synthetic source from the prompts -> ``source/`` with ``metadata.jsonl``.

In order:

1. the plan: ``images_per_class`` slots per category, each with its prompt and seed
   (``aa_core.data.synthetic``);
2. the main process settles the source's files (``aa_core.data.synthetic_source``): what earlier
   runs made with the same generator and options is kept, everything else is moved to ``stale/``;
3. the slots still empty are shared out between processes (one per GPU under ``accelerate
   launch``), disjoint and in plan order, and rendered in batches. An image that comes back
   blank (a safety checker's black square) or that an image filter drops is made again with a
   derived seed, up to ``generator.retries`` times; filtered images are kept aside in
   ``dropped/`` and every discarded attempt listed in ``dropped.jsonl``. Each batch is rendered, judged (blank?
   filtered?) and recorded: images under their final names once complete, then the batch's rows
   journaled, so a kill loses at most the batches in flight. Recording (PNG encoding and the
   flushes to disk) runs in a thread while the next batch renders, one batch at a time;
4. the main process settles again and reports the count per category (``generation.json``).

Every image is a function of its prompt and seed alone, so the result is the same whatever the
number of processes or the batch size.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from aa_core.context import StageContext
from aa_core.contracts import GeneratorContext, ImageFilterContext
from aa_core.data.builtin import cache_dir
from aa_core.data.prompts import read_prompts
from aa_core.data.synthetic import plan
from aa_core.data.synthetic_source import SyntheticSource, Verdict, Work
from aa_core.errors import AAError
from aa_core.fingerprints import filters_fingerprint, image_maker
from aa_core.run_folder import write_atomic
from aa_core.training.progress import progress_bar

logger = logging.getLogger("aa")


def synthetic_source(ctx: StageContext) -> SyntheticSource:
    """The source's files, against the plan: the prompts cycled over ``images_per_class`` slots per category."""
    config = ctx.config.generator
    slots = plan(read_prompts(ctx.folder.prompts, ctx.categories), config.images_per_class, ctx.config.seed)
    folder = ctx.folder
    return SyntheticSource(folder.source, folder.dropped, slots, image_maker(ctx), filters_fingerprint(ctx), folder.stale)


def run(ctx: StageContext) -> None:
    config, accelerator = ctx.config.generator, ctx.accelerator
    source = synthetic_source(ctx)
    if ctx.is_main:
        source.settle(config.retries)
    accelerator.wait_for_everyone()
    source.read()
    todo = source.work(config.retries)

    cls, options = ctx.implementation("generator")
    cache = cache_dir() / "generators"
    context = GeneratorContext(config.model, ctx.categories, accelerator.device, ctx.config.train.mixed_precision, cache)
    generator = cls(options, context)
    filter_context = ImageFilterContext(ctx.categories, ctx.config.task.domain, accelerator.device)
    filters = {name: f_cls(f_options, filter_context) for name, (f_cls, f_options) in ctx.implementations("filter").items()}
    try:
        with accelerator.split_between_processes(todo) as mine:
            make(mine, source, generator, filters, config.batch_size, config.retries, show=accelerator.is_local_main_process)
    finally:
        generator.close()
        for image_filter in filters.values():
            image_filter.close()
    accelerator.wait_for_everyone()
    if ctx.is_main:
        source.settle(config.retries)
        report(ctx, source)


def make(todo: list[Work], source: SyntheticSource, generator, filters: dict, batch_size: int, retries: int, show: bool) -> None:
    """Fill this process's slots batch by batch: render, judge, record; discarded attempts (blank or filtered) go back to the queue."""
    queue = deque(todo)
    bar = progress_bar(total=len(todo), desc="generate", unit="img", disable=not show)
    discarded = 0
    # One batch records while the next renders: encoding PNGs and waiting on fsync would otherwise
    # idle the generator (each batch flushes every image, its folders and the journal). Waiting
    # for the previous batch first keeps one batch in memory and raises its error (a full disk) here.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aa-record") as recorder:
        recording = None
        while queue:
            batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
            images = render(batch, source, generator)
            verdicts = [Verdict(work, image, reason) for work, image, reason in zip(batch, images, judge(filters, batch, images))]
            if recording is not None:
                recording.result()
            recording = recorder.submit(source.record, verdicts)
            discarded = tally(verdicts, queue, retries, bar, discarded)
        if recording is not None:
            recording.result()
    bar.close()


def tally(verdicts: list[Verdict], queue: deque, retries: int, bar, discarded: int) -> int:
    """Advance the bar for finished slots and queue the next attempt of a discarded one first; return how many were discarded."""
    for v in verdicts:
        if v.reason is None:
            bar.update(1)
            continue
        discarded += 1
        if v.work.attempt < retries:
            queue.appendleft(v.work.again(blank=v.image is None))
        else:
            bar.update(1)  # given up: the slot stays empty
    if discarded:
        bar.set_postfix(dropped=discarded)  # the word users read in the bar and generation.json
    return discarded


def render(batch: list[Work], source: SyntheticSource, generator) -> list[Image.Image | None]:
    """The batch's images (``None`` for a blank one): new ones from the generator, existing ones from disk."""
    fresh = [work for work in batch if not work.existing]
    made = list(generator.generate([w.slot.prompt for w in fresh], [w.seed for w in fresh]) if fresh else [])
    if len(made) != len(fresh):
        which = "fewer" if len(made) < len(fresh) else "more"
        raise AAError(f"generator '{source.maker['name']}' returned {which} images than prompts; fix the generator")
    made.reverse()
    out = []
    for work in batch:
        if work.existing:
            out.append(source.image(work))
            continue
        image = made.pop()
        # None: withheld by the generator; black: withheld, unless the generator says what it withholds
        out.append(None if image is None or (not generator.reports_withheld and is_blank(image)) else image)
    return out


def is_blank(image: Image.Image) -> bool:
    """All black: what a safety checker returns in place of an image it withholds."""
    extrema = image.convert("RGB").getextrema()
    return all(high == 0 for _low, high in extrema)


def judge(filters: dict, batch: list[Work], images: list[Image.Image | None]) -> list[str | None]:
    """Per image, why it is dropped ("blank", or the first filter's reason), or ``None`` to keep it."""
    reasons: list[str | None] = ["blank" if image is None else None for image in images]
    for name, image_filter in filters.items():
        open_ = [i for i, reason in enumerate(reasons) if reason is None]
        if not open_:
            break
        said = image_filter.reasons([images[i] for i in open_], [batch[i].slot.prompt for i in open_], [batch[i].slot.label for i in open_])
        for i, reason in zip(open_, said):
            if reason is not None:
                reasons[i] = f"{name}: {reason}"
    return reasons


def report(ctx: StageContext, source: SyntheticSource) -> None:
    """(Main process.) ``generation.json`` and one line: images per category, blank and filtered attempts ("dropped" in the file)."""
    counts = source.counts()
    asked = ctx.config.generator.images_per_class
    blank = sum(1 for row in source.discarded if not row.file_name)
    filtered = len(source.discarded) - blank
    summary = {"images": sum(counts.values()), "per_class": counts, "asked_per_class": asked, "blank": blank, "dropped": filtered}
    write_atomic(ctx.folder.generation, json.dumps(summary, indent=2))
    per_class = ", ".join(f"{label}: {n}" for label, n in counts.items())
    extra = f"; {blank} blank and {filtered} dropped attempts made again (listed in {source.discarded_list})" if source.discarded else ""
    logger.info("generated %d images: %s%s", summary["images"], per_class, extra)
    short = [label for label, n in counts.items() if n < asked]
    if short:
        logger.warning(
            "%d categor%s got fewer than %d images after %d retries (%s); raise generator.retries or loosen the filters",
            len(short), "y" if len(short) == 1 else "ies", asked, ctx.config.generator.retries, ", ".join(short[:5]),
        )  # fmt: skip
