"""``aa_stage_end`` without ``@hookimpl``: pluggy ignores it, so aa warns."""


def aa_stage_end(stage, run_dir, seconds, reused):
    print("never called")
