"""Each mode's data path on the lab, one class per mode (ipmininet's "daemons as classes"): udp.py
(the overlay daemon), vxlan.py (kernel VXLAN), routed.py (host-gw, static, none), frr.py (routes learned
by FRR); the DataPath interface and the shared pyroute2 helpers in base.py. What a mode is (device,
port, MTU overhead) is declared once, in flannel.Mode; its expected hops are in trace/paths.py.
"""

from __future__ import annotations

from netbench.flannel import Mode
from netbench.lab.datapaths.base import DataPath, publish
from netbench.lab.datapaths.frr import Frr
from netbench.lab.datapaths.routed import HostGw, NoDataPath, Static
from netbench.lab.datapaths.udp import Udp
from netbench.lab.datapaths.vxlan import Vxlan

# In the order a switch clears them: FRR first (zebra would re-install a route a later sweep removed).
ALL: tuple[DataPath, ...] = (Frr(), Udp(), Vxlan(), HostGw(), Static(), NoDataPath())
BY_MODE: dict[Mode, DataPath] = {path.mode: path for path in ALL}


def of(mode: Mode) -> DataPath:
    return BY_MODE[mode]


__all__ = ["ALL", "BY_MODE", "DataPath", "Frr", "HostGw", "NoDataPath", "Static", "Udp", "Vxlan", "of", "publish"]
