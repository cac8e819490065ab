"""Everything a plugin imports from Adapt Anything, in one module.

Contracts (subclass one per implementation; ``aa_core.contracts`` explains them)::

    Prompter, Prompt, PrompterContext             prompt generators   (aa.prompters)
    ImageGenerator, GeneratorContext              image generators    (aa.generators)
    ImageFilter, ImageFilterContext               image filters       (aa.filters)
    UDAAlgorithm, UDABatch, UDAData               domain adaptation   (aa.uda)
    SSLAlgorithm, SSLBatch, SSLFeed               semi-supervised     (aa.ssl)
    VisionLanguageModel, VLMContext               vision-language     (aa.vlms)
    Classifier, TrainingContext, Loaders          what algorithms receive
    Needs                                         what an algorithm needs of the run (backbone, defaults)
    Options                                       the base of every ``Options`` model: unknown keys refused
    NoOptions                                     for an implementation without options
    file_digest                                   a file's digest, for an implementation's ``inputs()``
    auto_dtype                                    the dtype a model runs in on a device (``auto``: bf16 where it has it)

Hooks (``aa_core.hookspecs``; implement them in a module registered under ``aa.plugins``)::

    hookimpl

Everything but ``hookimpl`` and ``AAError`` loads on first use, so a hook module stays light.

Training helpers::

    ImageClassifier          backbone -> bottleneck -> head, the ``Classifier`` the core builds
    SGDOptions, sgd          SGD with a slower pretrained backbone, optional no-decay groups
    sgd_training             sgd, accelerate's prepare and an Update in one call: (classifier, update)
    param_groups             the same groups, for any torch optimizer
    fused                    fused=True where torch has fused optimizer kernels (CPU, CUDA)
    frozen                   with frozen(*modules): no gradients for their parameters
    kept_statistics          with kept_statistics(module): batch norm's running statistics put back on leaving
    Dropout                  torch's dropout, its mask drawn faster on the CPU
    Update                   update(loss): zero-grad, backward, step, schedule
    EMA                      moving average of weights for prediction
    lambda_lr, progress, inverse_decay, sigmoid_ramp, cosine_decay, warmup_cosine
                             schedules of progress p

Errors::

    AAError                  a problem the user can fix: printed as one line, no traceback
    blank_credentials        a text with the password or key inside each URL in it blanked (for messages)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aa_core.errors import AAError
from aa_core.hookspecs import hookimpl

if TYPE_CHECKING:  # for readers and type checkers; at run time they load on first use
    from aa_core.contracts import (
        Classifier,
        GeneratorContext,
        ImageFilter,
        ImageFilterContext,
        ImageGenerator,
        Loaders,
        Needs,
        Prompt,
        Prompter,
        PrompterContext,
        SSLAlgorithm,
        SSLBatch,
        SSLFeed,
        TrainingContext,
        UDAAlgorithm,
        UDABatch,
        UDAData,
        VisionLanguageModel,
        VLMContext,
    )
    from aa_core.credentials import blank_credentials
    from aa_core.dtypes import auto_dtype
    from aa_core.models.classifier import ImageClassifier
    from aa_core.models.dropout import Dropout
    from aa_core.options import NoOptions, Options, SGDOptions
    from aa_core.run_folder import file_digest
    from aa_core.training.ema import EMA
    from aa_core.training.frozen import frozen
    from aa_core.training.kept_statistics import kept_statistics
    from aa_core.training.optim import Update, fused, param_groups, sgd, sgd_training
    from aa_core.training.schedules import cosine_decay, inverse_decay, lambda_lr, progress, sigmoid_ramp, warmup_cosine

CONTRACTS = (
    "Classifier", "GeneratorContext", "ImageFilter", "ImageFilterContext", "ImageGenerator", "Loaders", "Needs", "Prompt",
    "Prompter", "PrompterContext", "SSLAlgorithm", "SSLBatch", "SSLFeed", "TrainingContext", "UDAAlgorithm",
    "UDABatch", "UDAData", "VisionLanguageModel", "VLMContext",
)  # fmt: skip
SCHEDULES = ("cosine_decay", "inverse_decay", "lambda_lr", "progress", "sigmoid_ramp", "warmup_cosine")

_LAZY = {
    **dict.fromkeys(CONTRACTS, "aa_core.contracts"),
    **dict.fromkeys(SCHEDULES, "aa_core.training.schedules"),
    "ImageClassifier": "aa_core.models.classifier",
    "Dropout": "aa_core.models.dropout",
    "Options": "aa_core.options",
    "NoOptions": "aa_core.options",
    "SGDOptions": "aa_core.options",
    "file_digest": "aa_core.run_folder",
    "sgd": "aa_core.training.optim",
    "sgd_training": "aa_core.training.optim",
    "param_groups": "aa_core.training.optim",
    "Update": "aa_core.training.optim",
    "fused": "aa_core.training.optim",
    "frozen": "aa_core.training.frozen",
    "kept_statistics": "aa_core.training.kept_statistics",
    "EMA": "aa_core.training.ema",
    "blank_credentials": "aa_core.credentials",
    "auto_dtype": "aa_core.dtypes",
}

__all__ = [
    "AAError",
    "Classifier",
    "Dropout",
    "EMA",
    "GeneratorContext",
    "ImageClassifier",
    "ImageFilter",
    "ImageFilterContext",
    "ImageGenerator",
    "Loaders",
    "Needs",
    "NoOptions",
    "Options",
    "Prompt",
    "Prompter",
    "PrompterContext",
    "SGDOptions",
    "SSLAlgorithm",
    "SSLBatch",
    "SSLFeed",
    "TrainingContext",
    "UDAAlgorithm",
    "UDABatch",
    "UDAData",
    "VLMContext",
    "VisionLanguageModel",
    "auto_dtype",
    "Update",
    "blank_credentials",
    "cosine_decay",
    "file_digest",
    "frozen",
    "fused",
    "hookimpl",
    "inverse_decay",
    "kept_statistics",
    "lambda_lr",
    "param_groups",
    "progress",
    "sgd",
    "sgd_training",
    "sigmoid_ramp",
    "warmup_cosine",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aa_core.api' has no attribute {name!r}")
