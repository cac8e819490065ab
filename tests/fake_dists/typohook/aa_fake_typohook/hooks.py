"""``aa_stage_ned`` is a typo of ``aa_stage_end``: aa must refuse this plugin alone."""

from aa_core.api import hookimpl


@hookimpl
def aa_stage_ned(stage, run_dir, seconds, reused):
    print("never called")
