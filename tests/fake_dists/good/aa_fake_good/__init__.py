"""A third-party plugin used by the tests (a committed fake distribution)."""
