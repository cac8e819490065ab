"""Plugin discovery through real entry points of committed fake distributions."""

import json

from conftest import aa


def listing(*fakes, env=None) -> dict:
    proc = aa("plugins", "--json", fakes=fakes, env=env, check=0)
    return {p["distribution"]: p for p in json.loads(proc.stdout)["plugins"]}


def test_builtin_plugins_are_discovered_through_entry_points():
    plugins = listing()
    assert plugins["aa-prompters"]["names"] == {"prompter": ["template"]}
    assert plugins["aa-generators"]["names"] == {"generator": ["glyph"]}
    assert plugins["aa-uda"]["names"] == {"uda": ["adamatch", "cdtrans", "dann", "mcd", "shot", "symnets"]}
    assert plugins["aa-ssl"]["names"] == {"ssl": ["fixmatch", "freematch", "mixmatch", "softmatch"]}
    assert plugins["aa-llm"]["names"] == {"prompter": ["llm"]}
    assert plugins["aa-vlm"]["names"] == {"vlm": ["clip"]}
    assert all(p["status"] == "loaded" and p["builtin"] for p in plugins.values())


def test_third_party_plugin_lists_its_version_names_and_hooks():
    good = listing("good")["aa-fake-good"]
    assert good["version"] == "1.0"
    assert good["status"] == "loaded"
    assert not good["builtin"]
    assert good["names"] == {"filter": ["coin"]}  # an entry point of the aa.filters group, like any kind
    hooks = {"aa_register_commands", "aa_run_start", "aa_stage_start", "aa_stage_end", "aa_log", "aa_checkpoint", "aa_run_end"}
    assert set(good["hooks"]) == hooks
    example = listing("example:aa-entropy")["aa-entropy"]
    assert (example["version"], example["status"], example["builtin"]) == ("0.1.0", "loaded", False)
    assert example["names"] == {"uda": ["entropy"]}
    assert set(example["hooks"]) == {"aa_register_commands", "aa_stage_end"}


def test_broken_plugin_shows_as_failed_and_aa_keeps_working():
    proc = aa("plugins", fakes=["broken", "good"], check=0)
    assert "aa-fake-broken 0.3  [failed: ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed']" in proc.stdout
    assert "aa-fake-good 1.0  [loaded]" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_strict_mode_reraises_a_broken_plugin():
    proc = aa("plugins", fakes=["broken"], env={"AA_STRICT_PLUGINS": "1"})
    assert proc.returncode != 0
    assert "a_dependency_that_is_not_installed" in proc.stderr


def test_selecting_a_name_of_a_failed_plugin_names_the_plugin_and_why():
    proc = aa("run", "--ssl", "brokenmatch", fakes=["broken"])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: ssl 'brokenmatch' is registered by aa-fake-broken, which failed to load (ModuleNotFoundError: No module "
        "named 'a_dependency_that_is_not_installed'); fix or reinstall aa-fake-broken (`aa plugins` lists every plugin's "
        "state), or pick another ssl"
    )


def test_a_misspelled_hook_fails_its_plugin_alone():
    proc = aa("plugins", fakes=["typohook", "good"], check=0)
    reason = "unknown hook aa_stage_ned in aa-typohook; did you mean aa_stage_end?"
    assert f"aa-typohook 1.0  [failed: {reason}]" in proc.stdout
    assert "aa-fake-good 1.0  [loaded]" in proc.stdout
    assert f"WARNING: plugin aa-typohook failed to load: {reason}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert aa("--help", fakes=["typohook"]).returncode == 0
    assert aa("fake-hello", fakes=["typohook", "good"], check=0).stdout.strip() == "hello world from aa-fake-good"


def test_a_misspelled_hook_is_an_error_with_its_traceback_when_strict():
    proc = aa("plugins", fakes=["typohook"], env={"AA_STRICT_PLUGINS": "1"})
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: plugins failed to load: PluginValidationError: unknown hook aa_stage_ned in aa-typohook; did you mean aa_stage_end?"
    )


def test_a_hook_function_without_hookimpl_gets_a_warning():
    proc = aa("plugins", fakes=["unmarked"], check=0)
    assert "aa-unmarked 1.0  [loaded]" in proc.stdout
    assert (
        "WARNING: plugin aa-unmarked: aa_stage_end in aa_fake_unmarked.hooks is not marked @hookimpl, so it is never "
        "called; decorate it with `@hookimpl` from aa_core.api"
    ) in proc.stderr


def test_an_entry_point_naming_a_missing_class_says_where_to_fix_it():
    proc = aa("run", "--ssl", "typomatch", fakes=["badentry"])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: ssl 'typomatch' of aa-badentry (entry point 'aa_fake_badentry.typomatch:TypoMach' in aa.ssl): "
        "aa_fake_badentry.typomatch defines no 'TypoMach'; fix the class name of the entry point in aa-badentry's "
        "pyproject.toml and reinstall it"
    )


def test_a_misspelled_name_suggests_the_closest():
    proc = aa("run", "--ssl", "fixmach")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "error: unknown ssl 'fixmach'. Did you mean 'fixmatch'? Choose one of: fixmatch, freematch, mixmatch, softmatch"


def test_disable_env_var_turns_named_plugins_off():
    plugins = listing("good", env={"AA_DISABLE_PLUGINS": "aa_fake_good"})
    assert plugins["aa-fake-good"]["status"] == "disabled"
    assert plugins["aa-uda"]["status"] == "loaded"
    proc = aa("run", "--uda", "entropy", fakes=["example:aa-entropy"], env={"AA_DISABLE_PLUGINS": "aa-entropy"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: uda 'entropy' is registered by aa-entropy, disabled by AA_DISABLE_PLUGINS; turn it back on, or pick another uda"
    )


def test_builtin_only_switch_disables_every_third_party_plugin():
    plugins = listing("good", "broken", env={"AA_BUILTIN_PLUGINS_ONLY": "1"})
    assert plugins["aa-fake-good"]["status"] == "disabled"
    assert plugins["aa-fake-broken"]["status"] == "disabled"
    assert plugins["aa-uda"]["status"] == "loaded"


def test_unknown_name_fails_with_one_line_listing_the_choices():
    proc = aa("run", "--uda", "nosuch", fakes=["example:aa-entropy"])
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: unknown uda 'nosuch'. Choose one of: adamatch, cdtrans, dann, entropy, mcd, shot, symnets"


def test_name_collision_is_an_error_naming_both_distributions(tmp_path):
    proc = aa("run", "--out", tmp_path / "run", fakes=["clash"])
    assert proc.returncode == 1
    message = proc.stderr.strip()
    assert message.startswith("error: uda 'dann' is registered by both ")
    assert "aa-uda" in message and "aa-fake-clash" in message
    assert not (tmp_path / "run" / "prompts.jsonl").exists()  # it failed before any work
    listed = aa("plugins", fakes=["clash"], check=0)
    assert "uda 'dann' is registered by both" in listed.stderr


def test_disabling_one_side_of_a_collision_resolves_it():
    from aa_core.plugins import PluginManager  # noqa: F401  (importable without torch)

    proc = aa("plugins", "--json", fakes=["clash"], env={"AA_DISABLE_PLUGINS": "aa-fake-clash"}, check=0)
    assert json.loads(proc.stdout)["errors"] == []


def test_plugin_adds_a_command():
    proc = aa("fake-hello", "--name", "tests", fakes=["good"], check=0)
    assert proc.stdout.strip() == "hello tests from aa-fake-good"


def test_help_and_plugins_do_not_import_heavy_libraries():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from aa_cli.main import main\n"
        "for argv in (['aa', '--help'], ['aa', 'plugins']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'torchvision', 'timm', 'diffusers', 'transformers', 'accelerate') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY []"


def test_every_hookspec_is_implemented_by_the_test_plugin():
    import pluggy

    from aa_core import hookspecs

    specs = {name for name in dir(hookspecs) if name.startswith("aa_")}
    assert specs == set(listing("good")["aa-fake-good"]["hooks"])
    assert all(getattr(hookspecs, name).__doc__ for name in specs)
    assert isinstance(hookspecs.hookimpl, pluggy.HookimplMarker)


def test_the_core_sends_training_logs_to_tensorboard(tmp_path, tiny_config, small_target):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--ssl", "none",
       "--set", "track.trackers=[tensorboard]", check=0)  # fmt: skip
    events = EventAccumulator(str(out / "tracking" / "run")).Reload()
    assert {"source_only/loss", "adapt/loss", "adapt/adv"} <= set(events.Tags()["scalars"])  # the parts aa_checkpoint names
    assert [e.step for e in events.Scalars("adapt/loss")] == [0, 9]


def test_an_unknown_tracker_is_one_line(tmp_path):
    proc = aa("run", "--out", tmp_path / "run", "--set", "track.trackers=[tensorbored]")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: unknown tracker 'tensorbored' in track.trackers; choose from aim, ")
