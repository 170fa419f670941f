"""Code that runs ON nodes and in pods: standard library only, so a bare python3 on any node runs it."""
