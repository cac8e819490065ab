"""One module per stage: prompts -> generate -> adapt -> refine -> evaluate."""
