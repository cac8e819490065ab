"""Networks the core builds: a timm backbone with a bottleneck and a linear head."""
