"""Images in and out: image folders, built-in data sets, the synthetic source, input format."""
