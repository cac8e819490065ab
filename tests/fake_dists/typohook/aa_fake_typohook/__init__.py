"""A plugin with a misspelled hook (the mistake under test)."""
