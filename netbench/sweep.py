"""The message-size sweep of `netbench run --sizes`: which paths carry each size in one packet.

udp_rr's size is the UDP payload of a request, tcp's the MSS asked of iperf3 (-M); the sizes each test is
swept at are RunOptions.swept(). A size a path cannot carry unfragmented is refused (exit 2) before it is
measured: a fragmented request would time the reassembly, not the path, and a larger MSS is cut to the
path's without a word.
"""

from __future__ import annotations

from netbench import probes
from netbench.errors import InvalidValue
from netbench.facts import NodeFacts
from netbench.runoptions import RunOptions

OVERHEAD = {"udp_rr": 28, "tcp": 40}  # bytes of IPv4 + UDP, IPv4 + TCP headers


def path_mtus(facts: dict[str, NodeFacts], scenarios: tuple[str, ...], podless: set[str]) -> list[tuple[int, str]]:
    """(MTU, where) of every interface a measured packet crosses: the underlay (host-host), the pods' (the
    pod scenarios)."""
    out = []
    for name, f in facts.items():
        underlay = f.interfaces.get(f.underlay or "")
        if underlay and "host-host" in scenarios:
            out.append((underlay.mtu, f"{name}'s underlay {underlay.name}"))
        pod = probes.pod_mtu(f)
        if pod and name not in podless and set(scenarios) - {"host-host"}:
            out.append((pod, f"{name}'s pods"))
    return out


def check(options: RunOptions, facts: dict[str, NodeFacts], podless: set[str]) -> None:
    """InvalidValue naming the size, the test and the interface when a swept size does not fit."""
    mtus = path_mtus(facts, options.scenarios, podless)
    for test, sizes in options.swept().items():
        for mtu, where in mtus:
            if max(sizes) + OVERHEAD[test] > mtu:
                raise InvalidValue(f"--sizes: {max(sizes)} bytes of {test} do not fit one packet on {where} "
                                   f"(MTU {mtu}: at most {mtu - OVERHEAD[test]} bytes)")
