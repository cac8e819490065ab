"""A plugin whose modules fail to import."""
