"""Prompters of a third party: one reads a file (and declares it), one lets its options take any key."""
