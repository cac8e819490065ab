"""An example SSL plugin for Adapt Anything, written against ``aa_core.api`` alone:
``pseudolabel`` (``aa.ssl``), Pseudo-Label (Lee 2013)."""
