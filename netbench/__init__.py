"""netbench: measure and trace pod-network data paths (flannel udp/vxlan/host-gw, static, FRR)."""

__version__ = "0.1.0"
