"""`aa export RUN DIR`: a finished run's final model as a folder that loads without Adapt Anything.

The folder holds data and one file of code that is ours, and nothing that runs when it is read:

* ``model.safetensors``: the final network's weights (tensors only);
* ``config.json``: the network described in plain terms (``describe``): the backbone's timm name,
  input channels and feature width, the bottleneck's and head's layers with their sizes, the
  class names, the preprocessing, and the algorithms that trained it;
* ``modeling.py`` (``aa_results/export_modeling.py``): builds the network from that description
  with torch and timm, loads the weights, predicts;
* ``README.md``: a short model card: source, generator, prompts, algorithms, target accuracy where
  measured. It names no folder of this machine: a local model or image folder by its name alone.

Before anything is written the description is built by ``modeling.py``'s own code, given the
run's weights and fed a batch: it must compute what the run's model computes, or nothing is exported.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from aa_core.runs import AAError, Run
from aa_results.export_modeling import build


def export(run_dir: str | Path, out: str | Path) -> Path:
    run = Run.open(run_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise AAError(f"{out} is not empty; export into a new or empty folder")
    c = run.config
    if c.model.init is not None or c.model.backbone == "vlm" or run.final_stage == "zero_shot":
        network = f"model.init={c.model.init}" if c.model.init else "a vision-language model's tower"
        raise AAError(f"aa export writes timm networks, and the final model of {run.folder.root} is built on {network} "
                      "(transformers); use `aa predict` with the run folder")  # fmt: skip
    model = run.model()
    config = export_config(run, model)
    check_rebuilt(model, config)
    # written beside ``out`` and renamed into place whole: an export killed half-way leaves no
    # half-written ``out`` to refuse as "not empty", only its own temporary folder, removed next time
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*.export-tmp"):
        shutil.rmtree(stale)
    tmp = out.parent / f".{out.name}.{os.getpid()}.export-tmp"
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copyfile(Path(__file__).with_name("export_modeling.py"), tmp / "modeling.py")
    (tmp / "README.md").write_text(model_card(run, config))
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
    return out


def export_config(run: Run, model: nn.Module) -> dict:
    c = run.config
    fmt = run.input_format()
    if not all(hasattr(model, part) for part in ("backbone", "bottleneck", "head")):
        raise AAError(f"the final model of {run.folder.root} is a {type(model).__name__}, not backbone -> bottleneck -> head; "
                      "only such classifiers export")  # fmt: skip
    backbone = c.model.backbone or model.backbone.pretrained_cfg["architecture"]  # none configured: the one timm built
    return {
        "library": "adapt-anything",
        "backbone": {"name": backbone, "in_chans": c.data.channels, "num_features": model.backbone.num_features},
        "bottleneck": describe(model.bottleneck),
        "head": describe(model.head),
        "classes": list(run.categories),
        "preprocessing": {"channels": c.data.channels, "image_size": c.data.image_size, "mean": list(fmt.mean), "std": list(fmt.std)},
        "trained_by": {"stage": run.final_stage, "uda": c.uda.name, "ssl": c.ssl.name},
    }


def plain(module: nn.Module, cls: type) -> bool:
    """An instance of ``cls`` that computes what ``cls`` computes (a subclass may not override forward)."""
    return isinstance(module, cls) and type(module).forward is cls.forward


def describe(module: nn.Module) -> dict:
    """``module`` as config.json describes it (the layer types of modeling.py's ``LAYERS``).

    A module that computes more than its layers do declares it: ``module.exported(describe)``
    returns its description, in the same vocabulary (``mean_of_probabilities`` of named parts,
    ``columns`` from ``start`` of one part), its parts described by the ``describe`` it is given.
    modeling.py writes out what each type computes; ``check_rebuilt`` holds the result to the run's model."""
    if plain(module, nn.Linear):
        return {"type": "linear", "in_features": module.in_features, "out_features": module.out_features, "bias": module.bias is not None}
    if plain(module, nn.BatchNorm1d) and module.affine and module.track_running_stats:
        return {"type": "batch_norm", "num_features": module.num_features, "eps": module.eps, "momentum": module.momentum}
    if plain(module, nn.ReLU):
        return {"type": "relu"}
    if isinstance(module, nn.Dropout):  # any dropout (the core's draws its mask faster): nothing when predicting
        return {"type": "dropout", "p": module.p}
    if plain(module, nn.Sequential):
        return {"type": "sequential", "layers": [describe(layer) for layer in module]}
    if callable(getattr(module, "exported", None)):  # a module that says how it is exported (MCD's, SymNets' heads)
        return module.exported(describe)
    kind = type(module)
    raise AAError(f"cannot export a {kind.__module__}.{kind.__name__} layer: config.json describes Linear, BatchNorm1d, ReLU, Dropout "
                  "and Sequential, and a module whose exported(describe) method says what it computes in those terms "
                  f"(docs/writing-a-plugin.md); give {kind.__name__} that method")  # fmt: skip


def check_rebuilt(model: nn.Module, config: dict) -> None:
    """modeling.py's network from ``config``, with the run's weights, must give the run's model's outputs."""
    rebuilt = build(config)
    try:
        rebuilt.load_state_dict(model.state_dict())
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise AAError(f"the exported description does not hold the run's weights ({first}); aa export has a bug: report it") from None
    p = config["preprocessing"]
    x = torch.randn(4, p["channels"], p["image_size"], p["image_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model.eval()(x).float(), rebuilt.eval()(x).float()
    if not torch.allclose(expected, got, rtol=1e-4, atol=1e-5):
        gap = (expected - got).abs().max().item()
        raise AAError(f"the exported description computes other outputs than the run's model (by up to {gap:.3g}); "
                      "aa export has a bug: report it")  # fmt: skip


def shown(value: str) -> str:
    """A model or folder as a published card may name it: a hub id as it is, a local path by its last
    part alone (where the exporting machine keeps its files is nobody's business)."""
    path = Path(value).expanduser()
    local = path.is_absolute() or value.startswith((".", "~")) or "\\" in value or path.exists()
    return path.name if local else value


def metrics(run: Run) -> dict:
    path = run.folder.metrics
    return json.loads(path.read_text()) if path.is_file() else {}


def model_card(run: Run, config: dict) -> str:
    c, m = run.config, metrics(run)
    if c.data.source is not None:
        source = f"a real labelled image folder (`{shown(c.data.source)}`)"
    else:
        model = f", model `{shown(c.generator.model)}`" if c.generator.model else ""
        source = (f"synthetic: {c.generator.images_per_class} images per category from `{c.generator.name}`{model}, "
                  f"prompts from `{c.prompts.name}`" + (f" (`{shown(c.prompts.model)}`)" if c.prompts.model else ""))  # fmt: skip
    backbone = config["backbone"]
    lines = [
        f"# Image classifier for {c.task.domain}",
        "",
        f"Trained by Adapt Anything without labelled data of the target domain: {len(run.categories)} "
        f"categories ({', '.join(run.categories[:12])}{', ...' if len(run.categories) > 12 else ''}).",
        "",
        f"- **Source:** {source}.",
        f"- **Adaptation:** `{c.uda.name}`; **refinement:** `{c.ssl.name}` (the final model is the {run.final_stage} stage's).",
        f"- **Backbone:** timm `{backbone['name']}`{' (pretrained)' if c.model.pretrained else ''}, {backbone['num_features']} features, "
        f"bottleneck {c.model.bottleneck_dim}, head `{config['head']['type']}`.",
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
        "The folder holds weights (`model.safetensors`) and a description (`config.json`); `modeling.py` builds the network",
        "from the description with torch and timm, and runs no other code.",
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


def hub_calls(api, folder: Path, repo_id: str, private: bool) -> list[tuple[str, dict]]:
    """The ``HfApi`` methods a push calls, in order, with their arguments.

    ``create_repo(private=...)`` sets the visibility of a repository it creates and leaves an
    existing one's as it is: with ``private`` the repository is then made private, before any
    file is uploaded. Without it an existing repository keeps its visibility (never made public).
    Newer huggingface_hub has ``update_repo_settings``; older, ``update_repo_visibility`` (since removed).
    """
    calls = [("create_repo", {"repo_id": repo_id, "private": private, "exist_ok": True})]
    if private:
        method = "update_repo_settings" if hasattr(api, "update_repo_settings") else "update_repo_visibility"
        calls.append((method, {"repo_id": repo_id, "private": True}))
    calls.append(("upload_folder", {"folder_path": str(folder), "repo_id": repo_id, "commit_message": "Adapt Anything export"}))
    for method, kwargs in calls:  # a signature that moved under us is a one-line error, not a TypeError halfway
        inspect.signature(getattr(api, method)).bind(**kwargs)
    return calls


def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload the export to the Hugging Face Hub (token from the environment: HF_TOKEN or `hf auth login`)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise AAError("pushing to the Hub needs huggingface_hub: pip install huggingface_hub") from None
    api = HfApi()
    info = None
    try:
        for method, kwargs in hub_calls(api, folder, repo_id, private):
            info = getattr(api, method)(**kwargs)
    except Exception as exc:  # network, authentication and permission errors all end the same way for the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AAError(f"cannot push {folder} to the Hub as {repo_id} ({type(exc).__name__}: {reason}); "
                      "check the network and HF_TOKEN, or upload the folder later") from None  # fmt: skip
    return str(getattr(info, "commit_url", repo_id))
