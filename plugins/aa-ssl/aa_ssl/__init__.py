"""Semi-supervised learning algorithms for Adapt Anything."""
