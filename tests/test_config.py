"""Configuration: defaults, YAML, flags, --set, and one-line errors naming the field."""

import pytest
import yaml
from conftest import aa

from aa_core.config import load_config, parse_set
from aa_core.errors import ConfigError


def test_defaults_are_the_builtin_digits_task():
    config = load_config()
    assert config.task.categories == [str(d) for d in range(10)]
    assert config.data.target == "sklearn-digits"
    assert (config.prompts.name, config.generator.name, config.uda.name, config.ssl.name) == (
        "template",
        "glyph",
        "dann",
        "fixmatch",
    )


def test_precedence_is_defaults_then_file_then_flags_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 5\ntrain: {steps: 7, batch_size: 4}\nuda: {name: dann, trade_off: 0.5}\n")
    config = load_config(path, flags={"seed": 6, "uda": None}, sets=["train.steps=9", "task.categories=[cat, dog]"])
    assert config.seed == 6
    assert config.train.steps == 9
    assert config.train.batch_size == 4
    assert config.uda.options() == {"trade_off": 0.5}
    assert config.task.categories == ["cat", "dog"]


def test_set_values_are_read_as_yaml():
    assert parse_set("generator.model=null") == ("generator.model", None)
    assert parse_set("train.steps=10") == ("train.steps", 10)
    assert parse_set("uda.trade_off=0.3") == ("uda.trade_off", 0.3)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["train.steps=-1"], "invalid config: train.steps: Input should be greater than or equal to 0 (got -1)"),
        (["train.stepz=3"], "invalid config: train.stepz: unknown key (got 3)"),
        (["data.channels=2"], "invalid config: data.channels: Input should be 1 or 3 (got 2)"),
        (["task.categories=[a, a]"], "invalid config: task.categories: Value error, categories must be distinct (got ['a', 'a'])"),
        (["steps"], "invalid --set 'steps': write it as section.key=value"),
    ],
)
def test_invalid_values_name_the_field(sets, message):
    with pytest.raises(ConfigError) as error:
        load_config(sets=sets)
    assert str(error.value) == message


def test_invalid_config_exits_2_with_one_line_and_no_traceback(tmp_path):
    proc = aa("run", "--out", tmp_path, "--set", "train.batch_size=zero")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: invalid config: train.batch_size: Input should be a valid integer, unable to parse string as an integer (got 'zero')"
    )


def test_implementation_options_are_validated_by_the_implementation(tmp_path):
    proc = aa("run", "--out", tmp_path, "--set", "uda.trade_off=lots")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: invalid config: uda.trade_off: Input should be a valid number, unable to parse string as a number (got 'lots')"
    )
    proc = aa("run", "--out", tmp_path, "--set", "ssl.tau=0.9")
    assert proc.stderr.strip() == "error: invalid config: ssl.tau: unknown key (got 0.9)"


def test_unreadable_config_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    proc = aa("run", "--config", bad)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: config file {bad} is not valid YAML")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = aa("run", "--config", tmp_path / "missing.yaml")
    assert proc.returncode == 2
    assert "cannot read config file" in proc.stderr


PRESET = {"uda": {"name": "dann", "trade_off": 0.1}}  # as a task preset may set DANN's options


def test_task_options_apply_only_to_the_default_implementation():
    assert load_config(base=PRESET).uda.options() == {"trade_off": 0.1}
    assert load_config(flags={"uda": "dann"}, base=PRESET).uda.options() == {"trade_off": 0.1}
    assert load_config(sets=["uda.trade_off=1"], base=PRESET).uda.options() == {"trade_off": 1}
    assert load_config(flags={"uda": "entropy"}, base=PRESET).uda.options() == {}


def test_choosing_another_implementation_drops_the_previous_ones_options():
    base = load_config(sets=["generator.size=16", "generator.images_per_class=7"]).model_dump(mode="json")
    config = load_config(flags={"generator": "other", "uda": "entropy"}, base=base)
    assert config.generator.name == "other" and config.generator.options() == {}
    assert config.generator.images_per_class == 7  # a core key, kept
    assert config.uda.options() == {}


def test_category_names_given_as_numbers_are_names():
    assert load_config(sets=["task.categories=[0, 1, 2.5]"]).task.categories == ["0", "1", "2.5"]


def test_the_default_task_is_a_preset_file_that_a_user_target_does_not_load(tmp_path):
    from aa_core.config import TASKS

    preset = yaml.safe_load((TASKS / "sklearn-digits.yaml").read_text())
    assert load_config().data.dev_fraction == preset["data"]["dev_fraction"] == 0.5
    user = load_config(flags={"target": str(tmp_path)})
    assert user.data.dev_fraction == 0.0


def test_naming_another_implementation_in_any_layer_drops_the_preset_options():
    assert load_config(sets=["uda.name=entropy"], base=PRESET).uda.options() == {}
    assert load_config(sets=["uda.name=entropy", "uda.weight=2"], base=PRESET).uda.options() == {"weight": 2}
    assert load_config(sets=["uda.name=dann"], base=PRESET).uda.options() == {"trade_off": 0.1}


def test_only_optional_kinds_may_be_none():
    assert load_config(flags={"uda": "none", "ssl": "none"}).uda.name == "none"
    with pytest.raises(ConfigError, match="invalid config: generator.name: the generator cannot be none"):
        load_config(flags={"generator": "none"})


def test_source_only_training_has_its_own_section():
    config = load_config(sets=["source_only.steps=7", "source_only.lr=0.05"])
    assert (config.source_only.steps, config.source_only.lr, config.source_only.momentum) == (7, 0.05, 0.9)
    with pytest.raises(ConfigError, match="source_only.stepz: unknown key"):
        load_config(sets=["source_only.stepz=7"])


@pytest.mark.parametrize(("name", "classes"), [("office-31", 31), ("office-home", 65), ("visda-2017", 12), ("imageclef-da", 12)])
def test_the_data_set_examples_load_with_every_uda_algorithm(tmp_path, name, classes):
    """Each ready configuration validates, and its backbone (or DeiT, for CDTrans) passes every algorithm's check."""
    import functools

    from aa_core.config import implementation_options
    from aa_core.models.classifier import build_classifier, built_on_meta
    from aa_core.needs import check_backbone
    from aa_core.plugins import plugin_manager

    path = f"examples/datasets/{name}.yaml"
    target = tmp_path / "target"
    config = load_config(path, flags={"target": str(target)})
    assert len(config.task.categories) == classes and config.data.dev_fraction == 0  # no digits preset leaks in
    for uda in ("dann", "mcd", "symnets", "cdtrans"):
        backbone = "deit_small_patch16_224" if uda == "cdtrans" else config.model.backbone
        chosen = load_config(path, flags={"uda": uda}, sets=[f"model.backbone={backbone}", "model.pretrained=false"])
        cls = plugin_manager().load("uda", uda)
        implementation_options("uda.", chosen.uda.options(), cls)
        net = built_on_meta(functools.partial(build_classifier, chosen.model, classes, chosen.data.channels)).backbone
        check_backbone(net, cls.needs, uda)


@pytest.mark.parametrize(
    ("categories", "problem"),
    [
        ("[., b]", "category '.' starts with a dot, which hides its folder or names another; rename it"),
        ("[a, ..]", "category '..' starts with a dot, which hides its folder or names another; rename it"),
        ("[.journal, b]", "category '.journal' starts with a dot, which hides its folder or names another; rename it"),
        ("[a/b, c]", "category 'a/b' must be a non-empty name without slashes"),
        ("['a\\b', c]", "category 'a\\\\b' must be a non-empty name without slashes"),
        ("[A, b, a]", "categories 'A' and 'a' differ only in case; rename one"),
        ("['', b]", "category '' is empty; give every category a name"),
        ("['  ', b]", "category '  ' is empty; give every category a name"),
    ],
)
def test_a_category_must_be_a_plain_folder_name_unique_whatever_the_case(categories, problem):
    with pytest.raises(ConfigError) as error:
        load_config(sets=[f"task.categories={categories}"])
    assert str(error.value).startswith(f"invalid config: task.categories: Value error, {problem} (got [")


def test_a_bad_category_is_one_line_exit_2_before_the_run_folder_exists(tmp_path):
    proc = aa("run", "--out", tmp_path / "run", "--set", "task.categories=[a, ../x]")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: invalid config: task.categories: Value error, category '../x' starts with a dot, which hides its folder or names "
        "another; rename it (got ['a', '../x'])"
    )
    assert not (tmp_path / "run").exists()
