"""A third party's algorithms with heads of their own (for aa export)."""
