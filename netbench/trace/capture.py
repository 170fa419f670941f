"""tcpdump on a node's hop interfaces, over any Runner: all of a node's captures start in one round
trip and come back, base64-encoded, in one more. Nanosecond timestamps; tcpdump rather than a Python
sniffer because it barely disturbs what it measures (DESIGN §4)."""

from __future__ import annotations

import base64

from netbench.errors import NetbenchError
from netbench.flannel import ENCAP_PORTS
from netbench.probes import SAFE_WORKDIR
from netbench.remote import Runner

FILTER = " or ".join(["icmp", *(f"udp port {port}" for port in ENCAP_PORTS)])  # every overlay's wire
SNAPLEN = "512"  # headers of a VXLAN-in-UDP probe plus its marker; lengths keep the wire size

# the work directory is the run's (netbench.runlock): its name, the run id, tags every tcpdump
_START = SAFE_WORKDIR + r"""
dir=$1; filter=$2; snap=$3; shift 3
NB_RUN=${dir##*/}; export NB_RUN
for i in "$@"; do
  rm -f "$dir/cap-$i".*
  setsid -f sh -c 'exec >"$2" 2>&1 </dev/null; echo $$ >"$3"
    exec tcpdump -i "$1" -nn -U --immediate-mode -s "$6" --time-stamp-precision=nano -w "$4" "$5"' \
    nb-cap "$i" "$dir/cap-$i.log" "$dir/cap-$i.pid" "$dir/cap-$i.pcap" "$filter" "$snap"
done
n=0
while [ $n -lt 250 ]; do
  ok=1
  for i in "$@"; do grep -q "listening on" "$dir/cap-$i.log" 2>/dev/null || ok=0; done
  [ $ok = 1 ] && exit 0
  n=$((n+1)); sleep 0.02
done
for i in "$@"; do echo "$i: $(tail -n 2 "$dir/cap-$i.log" 2>/dev/null)"; done >&2
exit 1
"""

# tcpdump needs up to a second and a half to notice SIGINT (libpcap's poll timeout); with -U and
# --immediate-mode every packet is on disk as it arrives, so after a short grace SIGKILL loses nothing.
_STOP = r"""
dir=$1; shift
for i in "$@"; do p=$(cat "$dir/cap-$i.pid" 2>/dev/null) && kill -INT "$p" 2>/dev/null; done
sleep 0.1
for i in "$@"; do p=$(cat "$dir/cap-$i.pid" 2>/dev/null) && kill -KILL "$p" 2>/dev/null; done
for i in "$@"; do printf '%s ' "$i"; base64 -w0 "$dir/cap-$i.pcap" 2>/dev/null; echo; rm -f "$dir/cap-$i".*; done
"""


class CaptureError(NetbenchError):
    pass


def start(runner: Runner, ifaces: list[str], workdir: str) -> None:
    result = runner.run(["sh", "-c", _START, "nb-cap-start", workdir, FILTER, SNAPLEN, *ifaces], check=False,
                        timeout=20)
    if not result.ok:
        raise CaptureError(f"{runner.name}: tcpdump did not start: {result.stderr.strip()}")


def stop(runner: Runner, ifaces: list[str], workdir: str) -> dict[str, bytes]:
    """Stop the captures and return iface -> pcap bytes (empty when a capture left nothing)."""
    out = runner.run(["sh", "-c", _STOP, "nb-cap-stop", workdir, *ifaces], timeout=30).stdout
    pcaps: dict[str, bytes] = {}
    for line in out.splitlines():
        iface, _, data = line.partition(" ")
        if iface in ifaces:
            pcaps[iface] = base64.b64decode(data) if data.strip() else b""
    return pcaps
