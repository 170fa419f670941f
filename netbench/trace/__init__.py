"""netbench trace: follow marked probes hop by hop through both nodes, and say where and why a path breaks."""
