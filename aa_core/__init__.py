"""Adapt Anything core: stages, contracts and data. It knows no particular algorithm or generator.

Importing this package is cheap: torch and friends load only when a stage runs.
"""

__version__ = "0.2.0"
