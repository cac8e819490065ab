"""Unsupervised domain adaptation algorithms for Adapt Anything."""
