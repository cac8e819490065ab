"""The input format's views: plain once per image, weak and strong freshly drawn each time."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from aa_core.config import DataConfig
from aa_core.data.input_format import InputFormat
from aa_core.data.views import Views


def digit_images(n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L") for _ in range(n)]


def test_plain_view_matches_to_tensor_and_normalize_and_is_computed_once():
    fmt = InputFormat(DataConfig())
    images = digit_images()
    reference = T.Compose([T.ToTensor(), T.Normalize([0.5], [0.5])])
    views = Views(images, [fmt.plain()])
    for i, image in enumerate(images):
        assert torch.allclose(views[i], reference(image), atol=1e-6)
    images[0].paste(0, (0, 0, 8, 8))  # a cached view no longer reads the image
    assert torch.allclose(views[0], reference(digit_images()[0]), atol=1e-6)


def test_weak_and_strong_views_vary_per_draw_within_the_input_range():
    fmt = InputFormat(DataConfig())
    image = digit_images(1)[0]
    views = Views([image], [fmt.weak(), fmt.strong()], labels=[3])
    draws = [views[0] for _ in range(20)]
    for weak, strong, label in draws:
        assert weak.shape == strong.shape == (1, 8, 8) and label == 3
        assert weak.min() >= -1 and strong.max() <= 1
    assert len({d[1].numpy().tobytes() for d in draws}) > 15  # RandAugment + Cutout differ per draw
    colour = InputFormat(DataConfig(channels=3)).strong()(image.convert("RGB"))
    assert colour.shape == (3, 8, 8)


def test_a_pretrained_backbone_gets_the_normalisation_its_weights_were_trained_with():
    from aa_core.config import ModelConfig

    image = Image.new("RGB", (4, 4), (124, 116, 104))
    imagenet = InputFormat(DataConfig(channels=3), ModelConfig(backbone="resnet50", pretrained=True)).plain()(image)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = [(v / 255 - m) / s for v, m, s in zip((124, 116, 104), mean, std)]
    assert imagenet[:, 0, 0].tolist() == pytest.approx(expected, abs=1e-5)
    scratch = InputFormat(DataConfig(channels=3), ModelConfig(backbone="resnet50")).plain()(image)
    assert scratch[:, 0, 0].tolist() == pytest.approx([v / 127.5 - 1 for v in (124, 116, 104)], abs=1e-6)
    grey = InputFormat(DataConfig(channels=1), ModelConfig(backbone="resnet50", pretrained=True)).plain()(image.convert("L"))
    assert grey[0, 0, 0].item() == pytest.approx((image.convert("L").getpixel((0, 0)) / 255 - sum(mean) / 3) / (sum(std) / 3), abs=1e-5)


def test_predicting_over_plain_views_draws_no_random_numbers_and_over_weak_ones_does():
    """Evaluating a model (choosing a checkpoint, the split's plain view) never shifts the training around it."""
    from accelerate import Accelerator

    from aa_core.training.predict import predict_probabilities

    fmt, model = InputFormat(DataConfig()), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    plain = predict_probabilities(model, Views(digit_images(), [fmt.plain()]), Accelerator(cpu=True))
    assert plain.shape == (6, 3) and torch.equal(torch.get_rng_state(), state)
    predict_probabilities(model, Views(digit_images(), [fmt.weak()]), Accelerator(cpu=True))
    assert not torch.equal(torch.get_rng_state(), state)
