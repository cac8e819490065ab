"""Image generators for Adapt Anything."""
