"""Prompt generators for Adapt Anything."""
