"""A plugin that registers uda "dann" a second time."""
