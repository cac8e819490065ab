"""The hooks aa-diffusers joins: the CLIP image filter. Light: nothing heavy is imported here."""

from aa_core.api import hookimpl


@hookimpl
def aa_register_image_filters(register):
    from aa_diffusers.clip_filter import CLIPFilter

    register("clip", CLIPFilter)
