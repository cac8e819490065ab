"""The ``aa`` command line."""
