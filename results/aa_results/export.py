"""`aa export RUN DIR`: a finished run's final model as a folder that loads without Adapt Anything.

The folder holds ``model.safetensors`` (the final network's weights), ``config.json`` (the timm
backbone and its settings, the bottleneck width, the head, the class names, the preprocessing),
``modeling.py`` (``aa_results/export_modeling.py``: loading and prediction with torch, timm and
safetensors alone), ``backbones.py`` when the backbone is one of Adapt Anything's own timm
models, ``head.pt`` (TorchScript) when the head is more than one linear layer, and ``README.md``,
a short model card: source, generator, prompts, algorithms, target accuracy where measured.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from aa_core.runs import AAError, Run, own_backbone_source


def export(run_dir: str | Path, out: str | Path) -> Path:
    run = Run.open(run_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise AAError(f"{out} is not empty; export into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    model = run.model()
    head = "linear" if isinstance(model.head, torch.nn.Linear) else "torchscript"
    if head == "torchscript":
        torch.jit.script(model.head).save(str(out / "head.pt"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    config = export_config(run, head)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copyfile(Path(__file__).with_name("export_modeling.py"), out / "modeling.py")
    source = own_backbone_source(config["backbone"])
    if source is not None:
        (out / "backbones.py").write_text(source)
    (out / "README.md").write_text(model_card(run, config))
    return out


def export_config(run: Run, head: str) -> dict:
    c = run.config
    fmt = run.input_format()
    return {
        "library": "adapt-anything",
        "backbone": c.model.backbone,
        "bottleneck_dim": c.model.bottleneck_dim,
        "head": head,
        "classes": list(run.categories),
        "preprocessing": {"channels": c.data.channels, "image_size": c.data.image_size, "mean": list(fmt.mean), "std": list(fmt.std)},
        "trained_by": {"stage": run.final_stage, "uda": c.uda.name, "ssl": c.ssl.name},
    }


def metrics(run: Run) -> dict:
    path = run.folder.metrics
    return json.loads(path.read_text()) if path.is_file() else {}


def model_card(run: Run, config: dict) -> str:
    c, m = run.config, metrics(run)
    if c.data.source is not None:
        source = f"a real labelled image folder ({c.data.source})"
    else:
        model = f", model `{c.generator.model}`" if c.generator.model else ""
        source = (f"synthetic: {c.generator.images_per_class} images per category from `{c.generator.name}`{model}, "
                  f"prompts from `{c.prompts.name}`" + (f" (`{c.prompts.model}`)" if c.prompts.model else ""))  # fmt: skip
    lines = [
        f"# Image classifier for {c.task.domain}",
        "",
        f"Trained by Adapt Anything without labelled data of the target domain: {len(run.categories)} "
        f"categories ({', '.join(run.categories[:12])}{', ...' if len(run.categories) > 12 else ''}).",
        "",
        f"- **Source:** {source}.",
        f"- **Adaptation:** `{c.uda.name}`; **refinement:** `{c.ssl.name}` (the final model is the {run.final_stage} stage's).",
        f"- **Backbone:** timm `{config['backbone']}`{' (pretrained)' if c.model.pretrained else ''}, bottleneck {c.model.bottleneck_dim}, "
        f"head `{config['head']}`.",
        f"- **Input:** {'grey' if c.data.channels == 1 else 'colour'}, {c.data.image_size}x{c.data.image_size}, "
        f"mean {config['preprocessing']['mean']}, std {config['preprocessing']['std']}.",
    ]
    samples = sample_prompts(run)
    if samples:
        lines.append("- **Prompts (samples):** " + "; ".join(f'"{p}"' for p in samples))
    accuracy = m.get("target_accuracy")
    if accuracy:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items())
        lines.append(f"- **Target accuracy** (on {m.get('test_images', '?')} labelled target images, for the report only): {figures}.")
    else:
        lines.append("- **Target accuracy:** not measured (the target had no labels).")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import modeling                      # this folder's modeling.py: torch, timm, safetensors, Pillow",
        "model = modeling.load('.')",
        "print(modeling.predict('.', ['image.png']))",
        "```",
        "",
    ]
    return "\n".join(lines)


def sample_prompts(run: Run, n: int = 3) -> list[str]:
    path = run.folder.prompts
    if run.config.data.source is not None or not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row["text"] for row in rows[:: max(1, len(rows) // n)][:n]]


def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload the export to the Hugging Face Hub (token from the environment: HF_TOKEN or `hf auth login`)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise AAError("pushing to the Hub needs huggingface_hub: pip install huggingface_hub") from None
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Adapt Anything export")
    except Exception as exc:  # network, authentication and permission errors all end the same way for the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AAError(f"cannot push {folder} to the Hub as {repo_id} ({type(exc).__name__}: {reason}); "
                      "check the network and HF_TOKEN, or upload the folder later") from None  # fmt: skip
    return str(getattr(info, "commit_url", repo_id))
