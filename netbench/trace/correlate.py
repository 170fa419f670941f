"""Find the same probe in every capture and line its sightings up hop by hop (pure: pcap bytes in,
sightings out). Probes are ICMP echoes carrying a marker; inside UDP 8285 the payload is the pod's IP
packet, inside UDP 8472 a VXLAN frame: both are opened to reach the marker."""

from __future__ import annotations

import functools
import io
import socket
import struct
import threading
from dataclasses import dataclass, field

from netbench.flannel import UDP_PORT, VXLAN_PORT

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


@functools.cache
def scapy_layers():
    """scapy, imported on first use: it takes half a second, which `warm_up` spends while the nodes are
    reached (a trace needs it only once its captures are in)."""
    from scapy.config import conf
    from scapy.layers.inet import ICMP, IP, UDP, IPerror
    from scapy.layers.l2 import Ether  # noqa: F401  (registers Ethernet for rdpcap)
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    conf.l2types.register(101, IP)  # LINKTYPE_RAW: what tcpdump writes for a TUN (flannel0)
    return ICMP, IP, UDP, IPerror, VXLAN, Raw


def warm_up() -> threading.Thread:
    """Import scapy in the background; the first real use waits for it (Python's import lock)."""
    thread = threading.Thread(target=scapy_layers, name="import-scapy", daemon=True)
    thread.start()
    return thread


def _open(ip) -> tuple[object, dict]:
    """The pod's packet and how it was wrapped, from the outermost IP layer seen on the wire."""
    ICMP, IP, UDP, IPerror, VXLAN, Raw = scapy_layers()
    if UDP in ip and UDP_PORT in (ip[UDP].sport, ip[UDP].dport):
        return IP(bytes(ip[UDP].payload)), {"type": "udp", "outer_src": ip.src, "outer_dst": ip.dst,
                                            "port": UDP_PORT, "outer_ttl": ip.ttl}
    if UDP in ip and VXLAN_PORT in (ip[UDP].sport, ip[UDP].dport):
        vx = VXLAN(bytes(ip[UDP].payload))
        inner = vx[IP] if IP in vx else None
        return inner, {"type": "vxlan", "outer_src": ip.src, "outer_dst": ip.dst, "port": VXLAN_PORT,
                       "vni": vx.vni, "inner_mac_dst": getattr(vx.payload, "dst", None), "outer_ttl": ip.ttl}
    return ip, {}


# -- the probes' own packets, read from their headers -------------------------------------------
# scapy takes about a millisecond to dissect a packet, and a trace's captures hold ~700 of them. The
# probes and their replies are packets netbench built, in fixed shapes (IPv4 ICMP echo, plain or inside
# flannel's UDP or VXLAN), so their few fields are read straight from the bytes of scapy's raw records;
# anything else (ICMP errors, other encapsulations, options) goes to scapy's full dissection.
ETHERNET, RAW_IP = 1, (101, 12, 228)  # link types: tcpdump on a veth or bridge, and on a TUN (flannel0)
FALLBACK = object()  # "not a shape the fast path knows": dissect with scapy
_IP = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")


def _ip4(frame: bytes, off: int):
    """(header length, flags+fragment, ttl, protocol, src, dst) of an IPv4 header at off, or None."""
    if len(frame) < off + 20:
        return None
    vihl, _, _, _, frag, ttl, proto, _, src, dst = _IP.unpack_from(frame, off)
    if vihl >> 4 != 4:
        return None
    return (vihl & 0x0F) * 4, frag, ttl, proto, socket.inet_ntoa(src), socket.inet_ntoa(dst)


def _fast(frame: bytes, linktype: int, trace_id: int):
    """(kind, inner ttl, encap) of a probe or its reply; None for a packet that is not ours; FALLBACK when
    only scapy can tell."""
    if linktype == ETHERNET:
        if len(frame) < 14 or frame[12:14] != b"\x08\x00":
            return FALLBACK  # ARP, VLAN tags, IPv6: scapy decides
        off = 14
    elif linktype in RAW_IP:
        off = 0
    else:
        return FALLBACK
    outer = _ip4(frame, off)
    if outer is None:
        return FALLBACK
    ihl, frag, ttl, proto, src, dst = outer
    if frag & 0x1FFF:
        return None  # a later fragment: no header of the probe in it (scapy leaves it Raw too)
    off += ihl
    encap: dict = {}
    if proto == 17:
        if len(frame) < off + 8:
            return None
        sport, dport = struct.unpack_from("!HH", frame, off)
        if UDP_PORT in (sport, dport):
            encap = {"type": "udp", "outer_src": src, "outer_dst": dst, "port": UDP_PORT, "outer_ttl": ttl}
            off += 8
        elif VXLAN_PORT in (sport, dport):
            if len(frame) < off + 8 + 8 + 14 or frame[off + 8 + 8 + 12:off + 8 + 8 + 14] != b"\x08\x00":
                return FALLBACK
            vni = int.from_bytes(frame[off + 12:off + 15], "big")
            mac = frame[off + 16:off + 22].hex(":")
            encap = {"type": "vxlan", "outer_src": src, "outer_dst": dst, "port": VXLAN_PORT, "vni": vni,
                     "inner_mac_dst": mac, "outer_ttl": ttl}
            off += 8 + 8 + 14
        else:
            return FALLBACK  # another UDP port: scapy may know its encapsulation
        inner = _ip4(frame, off)
        if inner is None:
            return FALLBACK
        ihl, frag, ttl, proto, _, _ = inner
        if frag & 0x1FFF:
            return None
        off += ihl
    if proto != 1:
        return None
    if len(frame) < off + _ICMP_ECHO.size:
        return None
    icmp_type = frame[off]
    if icmp_type not in (0, 8):
        return FALLBACK if icmp_type in (3, 11) else None
    seq = read_marker(frame[off + 8:], trace_id)
    if seq is None:
        return None
    return seq, "request" if icmp_type == 8 else "reply", ttl, encap


def _records(pcap: bytes):
    """(frame, link type, time in ns, wire length) of every whole record; one cut short by the capture's end
    is dropped."""
    from scapy.utils import RawPcapReader
    try:
        reader = RawPcapReader(io.BytesIO(pcap))
    except Exception:  # noqa: BLE001 — not even a whole pcap header: nothing was captured
        return
    scale = 1 if reader.nano else 1000
    while True:
        try:
            frame, meta = reader._read_packet()
        except EOFError:
            return
        if len(frame) < meta.caplen:
            return
        yield frame, reader.linktype, meta.sec * 1_000_000_000 + meta.usec * scale, meta.wirelen


def _dissected(frame: bytes, linktype: int, trace_id: int, probe_ids: dict[int, int]):
    """What scapy makes of a packet the fast path does not know: (seq, kind, ttl, encap, error) or None."""
    from scapy.config import conf
    ICMP, IP, UDP, IPerror, VXLAN, Raw = scapy_layers()
    try:
        pkt = conf.l2types.num2layer[linktype](frame)
    except Exception:  # noqa: BLE001 — an unknown link type or a frame scapy cannot read
        return None
    if IP not in pkt:
        return None
    inner, encap = _open(pkt[IP])
    if inner is None or ICMP not in inner:
        return None
    icmp = inner[ICMP]
    if icmp.type in (0, 8):
        payload = bytes(icmp[Raw].load) if Raw in icmp else b""
        seq = read_marker(payload, trace_id)
        return None if seq is None else (seq, "request" if icmp.type == 8 else "reply", inner.ttl, encap, None)
    if icmp.type in (3, 11) and IPerror in icmp:
        seq = probe_ids.get(icmp[IPerror].id)
        if seq is None:
            return None
        what = {(3, 0): "net unreachable", (3, 1): "host unreachable", (3, 4): "fragmentation needed",
                (3, 3): "port unreachable", (11, 0): "TTL exceeded"}.get((icmp.type, icmp.code), "error")
        mtu = f" (next-hop MTU {icmp.nexthopmtu})" if (icmp.type, icmp.code) == (3, 4) else ""
        return seq, "error", inner.ttl, encap, f"ICMP {icmp.type}/{icmp.code} {what}{mtu} from {inner.src}"
    return None


def sightings(node: str, iface: str, pcap: bytes, trace_id: int, probe_ids: dict[int, int],
              fast: bool = True) -> list[Sighting]:
    """Every probe, reply or ICMP error about a probe in one capture. probe_ids: IP id -> probe number,
    to recognise the probe quoted inside an ICMP error (which carries only its first bytes). fast=False
    dissects every packet with scapy (what the fast path is tested against)."""
    if not pcap:
        return []
    found = []
    for frame, linktype, t_ns, length in _records(pcap):
        seen = _fast(frame, linktype, trace_id) if fast else FALLBACK
        if seen is FALLBACK:
            seen = _dissected(frame, linktype, trace_id, probe_ids)
        else:
            seen = seen and (*seen, None)
        if seen:
            seq, kind, ttl, encap, error = seen
            found.append(Sighting(node, iface, seq, kind, t_ns, ttl, length, encap, error))
    return found
