"""A plugin with a hook function that lacks @hookimpl (the mistake under test)."""
