"""Training algorithms that fail at step ``fail_at`` (the mistakes under test)."""
