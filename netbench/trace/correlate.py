"""Find the same probe in every capture and line its sightings up hop by hop (pure: pcap bytes in,
sightings out). Probes are ICMP echoes carrying a marker; inside UDP 8285 the payload is the pod's IP
packet, inside UDP 8472 a VXLAN frame: both are opened to reach the marker."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from decimal import Decimal

from scapy.config import conf
from scapy.layers.inet import ICMP, IP, UDP, IPerror
from scapy.layers.l2 import Ether  # noqa: F401  (registers Ethernet for rdpcap)
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import PcapReader

from netbench.flannel import UDP_PORT, VXLAN_PORT

conf.l2types.register(101, IP)  # LINKTYPE_RAW: what tcpdump writes for a TUN (flannel0)
MAGIC = b"NBTRACE"
_MARK = struct.Struct("!7sHH")  # magic, trace id, probe number


def marker(trace_id: int, seq: int) -> bytes:
    return _MARK.pack(MAGIC, trace_id & 0xFFFF, seq & 0xFFFF)


def read_marker(payload: bytes, trace_id: int) -> int | None:
    if len(payload) < _MARK.size:
        return None
    magic, tid, seq = _MARK.unpack_from(payload)
    return seq if magic == MAGIC and tid == trace_id & 0xFFFF else None


@dataclass(frozen=True)
class Sighting:
    node: str
    iface: str
    seq: int
    kind: str  # request | reply | error
    t_ns: int
    ttl: int  # of the pod's (inner) packet
    length: int  # bytes on the wire at this interface
    encap: dict = field(default_factory=dict)  # {} plain; {"type": "udp"|"vxlan", "outer_src", ...}
    error: str | None = None  # for ICMP errors about a probe: "3/4 frag needed (mtu 1400) from 10.1.93.1"


def _open(ip) -> tuple[object, dict]:
    """The pod's packet and how it was wrapped, from the outermost IP layer seen on the wire."""
    if UDP in ip and UDP_PORT in (ip[UDP].sport, ip[UDP].dport):
        return IP(bytes(ip[UDP].payload)), {"type": "udp", "outer_src": ip.src, "outer_dst": ip.dst,
                                            "port": UDP_PORT, "outer_ttl": ip.ttl}
    if UDP in ip and VXLAN_PORT in (ip[UDP].sport, ip[UDP].dport):
        vx = VXLAN(bytes(ip[UDP].payload))
        inner = vx[IP] if IP in vx else None
        return inner, {"type": "vxlan", "outer_src": ip.src, "outer_dst": ip.dst, "port": VXLAN_PORT,
                       "vni": vx.vni, "inner_mac_dst": getattr(vx.payload, "dst", None), "outer_ttl": ip.ttl}
    return ip, {}


def _packets(pcap: bytes):
    """Every whole packet of a capture; a record cut short by the capture's end is dropped."""
    reader = PcapReader(io.BytesIO(pcap))
    while True:
        try:
            pkt = reader.read_packet()
        except EOFError:
            return
        except Exception:  # noqa: BLE001 — a truncated last record: everything before it counts
            return
        if pkt is None:
            return
        yield pkt


def sightings(node: str, iface: str, pcap: bytes, trace_id: int, probe_ids: dict[int, int]) -> list[Sighting]:
    """Every probe, reply or ICMP error about a probe in one capture. probe_ids: IP id -> probe number,
    to recognise the probe quoted inside an ICMP error (which carries only its first bytes)."""
    if not pcap:
        return []
    found = []
    for pkt in _packets(pcap):
        if IP not in pkt:
            continue
        inner, encap = _open(pkt[IP])
        if inner is None or ICMP not in inner:
            continue
        icmp = inner[ICMP]
        t_ns = int(Decimal(pkt.time) * 1_000_000_000)
        length = int(getattr(pkt, "wirelen", None) or len(pkt))
        if icmp.type in (0, 8):
            payload = bytes(icmp[Raw].load) if Raw in icmp else b""
            seq = read_marker(payload, trace_id)
            if seq is not None:
                found.append(Sighting(node, iface, seq, "request" if icmp.type == 8 else "reply", t_ns, inner.ttl,
                                      length, encap))
        elif icmp.type in (3, 11) and IPerror in icmp:
            seq = probe_ids.get(icmp[IPerror].id)
            if seq is not None:
                what = {(3, 0): "net unreachable", (3, 1): "host unreachable", (3, 4): "fragmentation needed",
                        (3, 3): "port unreachable", (11, 0): "TTL exceeded"}.get((icmp.type, icmp.code), "error")
                mtu = f" (next-hop MTU {icmp.nexthopmtu})" if (icmp.type, icmp.code) == (3, 4) else ""
                found.append(Sighting(node, iface, seq, "error", t_ns, inner.ttl, length, encap,
                                      f"ICMP {icmp.type}/{icmp.code} {what}{mtu} from {inner.src}"))
    return found
