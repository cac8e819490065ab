"""`aa report RUN`: one self-contained HTML page of a run, readable offline.

In order: the accuracies and stage times; a grid of synthetic images per category with their
prompts; a sample of target images with the final model's predictions (confident ones, which the
refine stage took as labelled, framed green; the rest amber); the training curves of
``train_log.jsonl``; the confusion matrix on the test half of the target's labels (when it has
labels); the configuration and the plugins with their versions. Images and plots (matplotlib)
are embedded as data URIs: the page needs no network and no other file.

A report is made to be shared, so it embeds only what belongs to the run, whatever its files say:
a file the run folder names (``metadata.jsonl``'s images, ``predictions.csv``'s target images) is
resolved, symbolic links and ``..`` included, and left out unless it lies inside the run folder
(synthetic images) or inside the target folder among the images the run read (target images); the
page says how many were left out. A file the report reads by its fixed name (``metrics.json``,
``predictions.csv``, ...) that links outside the run folder stops the report with one line.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import yaml
from PIL import Image

from aa_core.runs import MODELS, AAError, Run, RunFolder, open_image, read_csv, told, write_atomic

PER_CATEGORY = 8  # synthetic images shown per category
TARGET_SAMPLE = 60  # target images shown


def data_uri(image: Image.Image, size: int = 64) -> str:
    """A PNG data URI of ``image``, enlarged with sharp pixels when it is small."""
    if max(image.size) < size:
        factor = max(1, size // max(image.size))
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def figure_uri(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def read_rows(path: Path) -> list[dict]:
    return read_csv(path) if path.is_file() else []


def tile(uri: str, caption: str, title: str = "", frame: str = "") -> str:
    style = f' style="border-color:{frame}"' if frame else ""
    return (f'<figure class="tile"{style}><img src="{uri}" alt="{html.escape(caption)}" title="{html.escape(title)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def json_rows(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of a JSON-lines file, and how many lines were not one (a hand edit, a torn last line)."""
    rows, broken = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            broken += 1
    return rows, broken


def number(text) -> float | None:
    """A CSV cell as a finite number, or None (an edited file's text)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def inside(root: Path, name: str) -> Path | None:
    """``root / name`` when it resolves (links followed) to a file inside ``root``; None for anything else."""
    path = (root / name).resolve()
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None


def opened(path: Path | None) -> Image.Image | None:
    """The image at ``path``, loaded; None when there is none or it does not open as an image."""
    return None if path is None else open_image(path)


def left_out(count: int, named_by: str, where: str) -> str:
    if not count:
        return ""
    return f"<p>{count} image(s) named by {named_by} were left out: they lie outside {where} or do not open as images.</p>"


def synthetic_section(folder: RunFolder, categories: list[str]) -> str:
    rows_path = folder.source / "metadata.jsonl"
    if not rows_path.is_file():
        return "<p>The source is a real image folder: nothing was synthesised.</p>"
    rows, skipped = json_rows(rows_path)
    parts = []
    for category in categories:
        tiles = []
        for row in (r for r in rows if r.get("label") == category and isinstance(r.get("file_name"), str)):
            if len(tiles) == PER_CATEGORY:
                break
            # anchored at the run folder, not at source/, which could itself be a link out of it
            image = opened(inside(folder.root, str(Path(folder.source.name) / row["file_name"])))
            if image is None:
                skipped += 1
                continue
            tiles.append(tile(data_uri(image), row["prompt"][:60], row["prompt"]))
        parts.append(f"<h3>{html.escape(category)}</h3><div class='grid'>{''.join(tiles)}</div>")
    parts.append(left_out(skipped, "source/metadata.jsonl", "the run folder"))
    dropped = folder.dropped / "dropped.jsonl"
    if dropped.is_file() and dropped.read_text().strip():
        count = len(dropped.read_text().splitlines())
        parts.append(f"<p>{count} attempts were blank or dropped by an image filter and made again (dropped/dropped.jsonl).</p>")
    return "".join(parts)


def target_section(run: Run, predictions: list[dict]) -> str:
    split = {row["image"]: row["confident"] == "1" for row in read_rows(run.folder.split)}
    read = set(run.target.names)  # what the run itself found in the target folder
    kept = [row for row in predictions if row["image"] in read and inside(run.target.root, row["image"])]
    skipped = len(predictions) - len(kept)
    step = max(1, len(kept) // TARGET_SAMPLE)
    tiles = []
    for row in kept[::step][:TARGET_SAMPLE]:  # decoded: the sample alone
        image = opened(inside(run.target.root, row["image"]))
        if image is None:
            skipped += 1
            continue
        confident = split.get(row["image"])
        frame = "" if confident is None else ("#2e7d32" if confident else "#ef8f00")
        confidence = number(row.get("confidence"))
        caption = f"{row['predicted']}" + (f" ({confidence:.2f})" if confidence is not None else "")
        tiles.append(tile(data_uri(image.convert("RGB")), caption, row["image"], frame))
    legend = "<p>Green: confident, labelled by its pseudo-label for refinement; amber: unconfident.</p>" if split else ""
    return legend + f"<div class='grid'>{''.join(tiles)}</div>" + left_out(skipped, "predictions.csv", "the target folder")


def curves_section(folder: RunFolder) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not folder.log.is_file():
        return "<p>No training log.</p>"
    by_stage: dict[str, list[dict]] = {}
    for row in json_rows(folder.log)[0]:
        if isinstance(row.get("stage"), str):
            by_stage.setdefault(row["stage"], []).append(row)
    plots = []
    for stage, rows in by_stage.items():
        figure, axis = plt.subplots(figsize=(4.5, 3))
        names = [k for k in rows[-1] if k not in ("stage", "step") and isinstance(rows[-1][k], (int, float))]
        for name in names:
            points = [(r["step"], r[name]) for r in rows if name in r]
            axis.plot([p[0] for p in points], [p[1] for p in points], label=name)
        axis.set_title(stage)
        axis.set_xlabel("step")
        if names:
            axis.legend(fontsize=7)
        plots.append(f'<img class="plot" src="{figure_uri(figure)}" alt="training curves of {html.escape(stage)}">')
    return "".join(plots)


def confusion_section(run: Run, predictions: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    target, categories = run.target, run.categories
    if target.labels is None or not target.test:
        return "<p>The target has no labels: no confusion matrix.</p>"
    predicted = {row["image"]: row["predicted"] for row in predictions}
    names, k = target.names, len(categories)
    matrix = np.zeros((k, k), dtype=int)
    for i in target.test:
        if predicted.get(names[i]) in categories:  # a predictions.csv edited by hand may lack a row
            matrix[target.labels[i], categories.index(predicted[names[i]])] += 1
    figure, axis = plt.subplots(figsize=(1 + 0.45 * k, 1 + 0.45 * k))
    axis.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, str(value), ha="center", va="center", fontsize=7, color="white" if value > matrix.max() / 2 else "black")
    axis.set_xticks(range(k), categories, rotation=90, fontsize=7)
    axis.set_yticks(range(k), categories, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    accuracy = np.trace(matrix) / matrix.sum()
    caption = f"<p>Test half of the target's labels ({matrix.sum()} images, accuracy {accuracy:.4f}); for the report only.</p>"
    return caption + f'<img class="plot" src="{figure_uri(figure)}" alt="confusion matrix">'


def shown(value, digits: int = 4) -> str:
    """A value of a file the report reads, as text for the page: a number rounded, anything else
    (an edited file's string) escaped."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{round(value, digits)}"
    return html.escape(str(value))


def section(metrics: dict, key: str) -> dict:
    """``metrics[key]`` where it is a mapping (an edited file may hold anything there)."""
    value = metrics.get(key, {})
    return value if isinstance(value, dict) else {}


def metrics_section(metrics: dict) -> str:
    test, dev, seconds = section(metrics, "target_accuracy"), section(metrics, "dev_accuracy"), section(metrics, "seconds")
    models = [m for m in MODELS if m in test]
    rows = "".join(f"<tr><td>{m}</td><td>{shown(test[m])}</td><td>{shown(dev.get(m, ''))}</td></tr>" for m in models)
    table = f"<table><tr><th>model</th><th>test</th><th>dev</th></tr>{rows}</table>" if rows else "<p>The target has no labels.</p>"
    times = ", ".join(f"{html.escape(str(stage))} {shown(value, 1)} s" for stage, value in seconds.items())
    final = section(metrics, "final")
    kept = "".join(f"<p>{html.escape(line)}</p>" for line in told(metrics)) if {"model", "reason"} <= set(final) else ""
    return table + kept + (f"<p>Stage times: {times}.</p>" if times else "")


def plugins_recorded(plugins: dict) -> list[tuple[str, str, dict]]:
    """(kind, name, {distribution, version}) of each implementation ``config.yaml`` records; a kind
    chosen several at once (image filters) records a mapping of names."""
    out = []
    for kind, record in plugins.items():
        named = {record.get("name"): record} if "name" in record else record
        out += [(kind, name, p) for name, p in named.items()]
    return out


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
.tile { margin: 0; border: 3px solid transparent; width: 112px; font-size: 10px; }
.tile img { width: 100%; image-rendering: pixelated; display: block; }
.plot { max-width: 480px; margin: 4px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
pre { background: #f6f6f6; padding: 1em; overflow: auto; }
"""

# once everything is in, the title says how many images decoded: a browser test reads it
CHECK = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  document.title = "images loaded: " + loaded + "/" + images.length;
});
"""


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    run = Run.open(run_dir)
    folder = run.folder
    for path in (folder.config, folder.metrics, folder.predictions, folder.split, folder.log, folder.source / "metadata.jsonl",
                 folder.dropped / "dropped.jsonl"):  # fmt: skip
        if path.exists() and not path.resolve().is_relative_to(folder.root.resolve()):
            raise AAError(f"{path} links outside the run folder (to {path.resolve()}); aa report reads only files inside "
                          f"{folder.root}: put the file itself there")  # fmt: skip
    if not folder.metrics.is_file():
        raise AAError(f"{folder.root} has no metrics.json yet; finish it with `aa run --out {folder.root}`")
    try:
        metrics = json.loads(folder.metrics.read_text())
    except ValueError as exc:  # edited by hand
        raise AAError(f"{folder.metrics} is not JSON ({exc}); run `aa evaluate {folder.root}` to write it again") from None
    if not isinstance(metrics, dict):
        raise AAError(f"{folder.metrics} is not a JSON object; run `aa evaluate {folder.root}` to write it again")
    predictions = read_rows(folder.predictions)
    recorded = yaml.safe_load(folder.config.read_text()) or {}
    plugin_rows = "".join(
        f"<tr><td>{html.escape(str(kind))}</td><td>{html.escape(str(name))}</td><td>{html.escape(str(p.get('distribution', '')))}</td>"
        f"<td>{html.escape(str(p.get('version', '')))}</td></tr>"
        for kind, name, p in plugins_recorded(recorded.get("plugins", {}))
    )
    sections = [
        ("Accuracy", metrics_section(metrics)),
        ("Synthetic source", synthetic_section(folder, run.categories)),
        ("Target predictions", target_section(run, predictions)),
        ("Training curves", curves_section(folder)),
        ("Confusion matrix", confusion_section(run, predictions)),
        ("Plugins", f"<table><tr><th>kind</th><th>name</th><th>distribution</th><th>version</th></tr>{plugin_rows}</table>"),
        ("Configuration", f"<pre>{html.escape(folder.config.read_text())}</pre>"),
    ]
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    head = f"<meta charset='utf-8'><title>report</title><style>{STYLE}</style><script>{CHECK}</script>"
    page = f"<!doctype html><html><head>{head}</head><body><h1>Adapt Anything run: {html.escape(str(folder.root))}</h1>{body}</body></html>"
    path = Path(out) if out else folder.root / "report.html"
    write_atomic(path, page)  # a link planted under its name is replaced, not written through
    return path
