"""The lab: a real multi-node flannel-style cluster in network namespaces, reached over SSH."""
