"""Reports made from a run directory alone, so they can be re-made at any time from stored results."""
