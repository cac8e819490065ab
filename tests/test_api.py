"""The public plugin API: one module, the only one built-in plugins import, and what it promises."""

import ast
import sys
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

import aa_core.api as api
from aa_core.api import frozen
from aa_core.config import DataConfig, ModelConfig
from aa_core.data.input_format import InputFormat
from aa_core.data.loaders import Loaders
from aa_core.errors import AAError
from aa_core.models.classifier import build_classifier
from aa_core.needs import check_backbone

ROOT = Path(__file__).parent.parent
PLUGIN_CODE = [*ROOT.glob("plugins/*/aa_*/**/*.py"), *ROOT.glob("examples/*/aa_*/**/*.py")]


def aa_core_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aa_core":
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "aa_core"}
    return names


@pytest.mark.parametrize("path", PLUGIN_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_nothing_from_the_core_but_the_api(path):
    assert aa_core_imports(path) <= {"aa_core.api"}


def test_every_name_the_api_exports_resolves():
    assert PLUGIN_CODE  # the check above saw the plugins
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError):
        api.no_such_helper  # noqa: B018


def test_importing_the_api_for_a_hook_imports_no_torch():
    import subprocess

    code = "import sys; from aa_core.api import hookimpl, UDAAlgorithm, AAError; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


class Context:
    pretrained_backbone = True

    def __init__(self):
        from accelerate import Accelerator

        self.accelerator = Accelerator(cpu=True)


def test_sgd_slows_a_pretrained_backbone_and_can_spare_biases_and_norms_from_decay():
    model = build_classifier(ModelConfig(), 3, 1)
    options = api.SGDOptions(lr=0.1, weight_decay=0.01)
    rest = torch.nn.ModuleList([model.bottleneck, model.head])
    groups = api.sgd({"backbone": model.backbone, "rest": rest}, options, Context(), decay_norm_and_bias=False).param_groups
    assert [x for g in groups for x in (g["lr"], g["weight_decay"])] == pytest.approx([0.01, 0.01, 0.01, 0, 0.1, 0.01, 0.1, 0])
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_sgd_runs_fused_on_the_cpu_and_steps_as_the_loop_does():
    trained = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
        start = torch.cat([p.detach().flatten() for p in model.parameters()])
        optimizer = api.sgd({"rest": model}, api.SGDOptions(), Context())
        assert optimizer.defaults["fused"] is True
        optimizer.defaults["fused"] = optimizer.param_groups[0]["fused"] = fused
        for _ in range(3):  # momentum and Nesterov's look-ahead come in from the second step
            optimizer.zero_grad()
            model(torch.randn(6, 4)).logsumexp(dim=1).mean().backward()
            optimizer.step()
        trained.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert not torch.allclose(trained[-1], start)
    assert torch.allclose(*trained, atol=1e-6)


def test_frozen_modules_pass_gradients_through_but_take_none():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
    b.bias.requires_grad_(False)  # frozen before: stays frozen
    x = torch.randn(2, 3)
    with frozen(b):
        b(a(x)).sum().backward()
    assert all(p.grad is not None for p in a.parameters()) and all(p.grad is None for p in b.parameters())
    assert b.weight.requires_grad and not b.bias.requires_grad
    with pytest.raises(RuntimeError), frozen(b):
        raise RuntimeError("the update failed")
    assert b.weight.requires_grad


def test_update_zeroes_steps_and_schedules_once_per_loss():
    from accelerate import Accelerator

    w = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([w], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    update = api.Update(optimizer, Accelerator(cpu=True), scheduler)
    update((w * 2).sum())  # grad 2, lr 0.5: w = 0
    update((w * 2).sum())  # grad 2 again (zeroed in between), lr 0.25: w = -0.5
    assert w.item() == pytest.approx(-0.5)


def test_ema_averages_parameters_and_copies_buffers():
    model = torch.nn.BatchNorm1d(1)
    ema = api.EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.9 * 1 + 0.1 * 2)
    assert ema.module.running_mean.item() == 5.0
    assert not ema.module.weight.requires_grad


def test_an_algorithm_that_needs_another_backbone_family_gets_a_clear_error():
    backbone = build_classifier(ModelConfig(), 3, 1).backbone
    check_backbone(backbone, api.Needs(backbone="SmallCNN"), "uda 'x'")
    check_backbone(backbone, api.Needs(), "uda 'x'")  # needs nothing: any backbone
    with pytest.raises(AAError, match="uda 'cdtrans' needs a VisionTransformer backbone, and model.backbone is a SmallCNN"):
        check_backbone(backbone, api.Needs(backbone="VisionTransformer"), "uda 'cdtrans'")


class TwoHeads(api.UDAAlgorithm):
    """An algorithm that changes the network: it sums two heads."""

    class Net(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier, self.head2 = classifier, torch.nn.Linear(classifier.features_dim, classifier.num_classes)

        def forward(self, x):
            f = self.classifier.features(x)
            return self.classifier.head(f) + self.head2(f)

    def train_step(self, batch, step):
        return {}

    @classmethod
    def build_network(cls, classifier, options):
        return cls.Net(classifier)


def test_a_network_is_rebuilt_from_weights_without_building_the_algorithm(tmp_path):
    from safetensors.torch import save_model

    from aa_core.training.weights import load_weights

    network = TwoHeads.build_network(build_classifier(ModelConfig(), 3, 1), api.NoOptions())
    algorithm = TwoHeads(api.NoOptions(), network, None)
    assert algorithm.predictor() is network  # what is saved is what was built and trained
    save_model(algorithm.predictor(), str(tmp_path / "two-heads.safetensors"))
    rebuilt = TwoHeads.build_network(build_classifier(ModelConfig(), 3, 1, for_training=False), api.NoOptions())
    load_weights(rebuilt, tmp_path / "two-heads.safetensors")
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(network.eval()(x), rebuilt.eval()(x), atol=1e-6)
    assert api.UDAAlgorithm.build_network.__func__(api.UDAAlgorithm, "net", None) == "net"  # default: as is


def test_loaders_give_indices_a_sampler_and_one_ordered_pass():
    from accelerate import Accelerator

    data = torch.utils.data.TensorDataset(torch.arange(10.0))
    loaders = Loaders(Accelerator(cpu=True), seed=0)
    index, x = next(loaders(data, 4, indices=True))
    assert torch.equal(x, index.float())
    ordered = torch.utils.data.SequentialSampler(data)
    assert next(loaders(data, 4, sampler=ordered))[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    passes = list(loaders.once(data, 4, indices=True))
    assert [b[0].tolist() for b in passes] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


class KViews(api.SSLAlgorithm):
    """Views chosen from the options, as MixMatch's K augmentations."""

    class Options(BaseModel):
        k: int = 3

    @classmethod
    def feed(cls, options, context):
        return api.SSLFeed(context.batch_size, 2 * context.batch_size, ("plain",), ("weak",) * options.k, "all")

    def train_step(self, batch, step):
        return {"views": len(batch.x_u)}


class Plain(api.SSLAlgorithm):
    def train_step(self, batch, step):
        return {}


def test_an_ssl_algorithm_declares_its_feed_from_its_options():
    context = api.TrainingContext(None, 3, total_steps=1, batch_size=5, pretrained_backbone=False, seed=0)
    feed = KViews.feed(KViews.Options(k=4), context)
    assert (feed.labelled_batch_size, feed.unlabelled_batch_size, feed.unlabelled) == (5, 10, "all")
    fmt = InputFormat(DataConfig())
    assert len([fmt.view(v) for v in feed.unlabelled_views]) == 4
    default = Plain.feed(api.NoOptions(), context)
    assert default == api.SSLFeed(5, 5, ("weak",), ("weak", "strong"), "unconfident")


def test_a_pretrained_backbone_loads_from_a_local_checkpoint(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", num_classes=10)  # a checkpoint with its own classifier
    save_file(source.state_dict(), tmp_path / "weights.safetensors")
    model = ModelConfig(backbone="test_resnet", pretrained=str(tmp_path / "weights.safetensors"))
    classifier = build_classifier(model, num_classes=3, channels=1)
    loaded = classifier.backbone.state_dict()
    assert torch.equal(loaded["layer1.0.conv1.weight"], source.state_dict()["layer1.0.conv1.weight"])
    assert torch.allclose(loaded["conv1.0.weight"], source.state_dict()["conv1.0.weight"].sum(dim=1, keepdim=True))  # 3 -> 1 channel
    assert classifier.head.out_features == 3
    with pytest.raises(AAError, match=f"checkpoint {tmp_path / 'missing.pth'} does not exist"):
        build_classifier(ModelConfig(backbone="test_resnet", pretrained=str(tmp_path / "missing.pth")), 3, 1)


def test_a_classifier_for_training_stores_convolutions_channels_last_and_checkpoints_load_anywhere(tmp_path):
    from safetensors.torch import load_model, save_model

    trained = build_classifier(ModelConfig(), 3, 1)
    convs = [p for p in trained.parameters() if p.dim() == 4 and p.shape[1] > 1]  # one input channel: both layouts agree
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)
    save_model(trained, str(tmp_path / "w.safetensors"))
    plain = build_classifier(ModelConfig(), 3, 1, for_training=False)
    assert all(p.is_contiguous() for p in plain.parameters())
    load_model(plain, str(tmp_path / "w.safetensors"))
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(plain.eval()(x), trained.eval()(x), atol=1e-5)
