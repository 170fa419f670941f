#!/usr/bin/env bash
# How the captures here were made: real nft / iptables-nft / iptables-legacy in a throwaway namespace
# nb-fwcap, read by probes/firewall.py before and after 20 ICMP echo requests 10.1.5.2 -> 10.1.7.2
# (and 5 unrelated UDP packets 10.1.5.2 -> 10.1.9.2:53) forwarded by that namespace from fwb to the
# veth fwout. Run from the repository root as root, under the lab lock:
#   flock /tmp/netbench-lab.lock tests/unit/data/firewall/capture.sh
# Nothing touches the root namespace: every nft/iptables call runs inside nb-fwcap.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
OUT=tests/unit/data/firewall
NS=nb-fwcap
X=(ip netns exec "$NS")

up() {
  ip netns add "$NS"
  "${X[@]}" ip link set lo up
  "${X[@]}" ip link add fwa type veth peer name fwb
  "${X[@]}" ip link add fwout type veth peer name fwsink
  for d in fwa fwb fwout fwsink; do "${X[@]}" ip link set "$d" up; done
  "${X[@]}" ip addr add 198.18.0.1/30 dev fwb
  "${X[@]}" ip addr add 198.18.0.5/30 dev fwout
  "${X[@]}" ip route add 10.1.5.0/24 dev fwb
  "${X[@]}" ip route add 10.1.7.0/24 dev fwout
  "${X[@]}" ip route add 10.1.9.0/24 dev fwout
  "${X[@]}" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.fwb.rp_filter=0
}

send() {  # sent on fwa, so the packets come in on fwb and are forwarded (or dropped) to fwout
  "${X[@]}" python3 - <<'PY'
from scapy.all import Ether, ICMP, IP, UDP, get_if_hwaddr, sendp
dst = get_if_hwaddr("fwb")
sendp([Ether(dst=dst) / IP(src="10.1.5.2", dst="10.1.7.2") / ICMP(id=7, seq=i) for i in range(20)],
      iface="fwa", verbose=False)
sendp([Ether(dst=dst) / IP(src="10.1.5.2", dst="10.1.9.2") / UDP(sport=40000, dport=53) for _ in range(5)],
      iface="fwa", verbose=False)
PY
}

capture() {  # name, then the rules are already loaded
  "${X[@]}" python3 - < probes/firewall.py > "$OUT/$1-before.json"
  send
  "${X[@]}" python3 - < probes/firewall.py > "$OUT/$1-after.json"
}

scenario() {  # name setup-function
  trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
  up
  "$2"
  capture "$1"
  ip netns del "$NS"
  trap - EXIT
}

nft_rule() {
  "${X[@]}" nft -f - <<'NFT'
table inet filter {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    ip saddr 10.9.0.0/16 counter drop
    ip daddr 10.1.9.0/24 udp dport 53 counter reject
    ip daddr 10.1.7.0/24 icmp type echo-request counter drop
  }
}
NFT
}

nft_policy() {
  "${X[@]}" nft -f - <<'NFT'
table inet x {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lo" accept
    ip saddr { 10.9.0.0/16, 192.168.0.0/24 } accept
    meta l4proto tcp tcp dport { 22, 80 } accept
    ip daddr 10.1.8.0/24 udp dport 8285 accept
    oifname "fwout" ip daddr 10.1.9.0/24 udp dport 53 accept
  }
}
NFT
}

nft_policy_mark() {
  nft_policy
  "${X[@]}" nft add rule inet x forward meta mark 0x1 accept
}

nft_policy_accepted() {
  nft_policy
  "${X[@]}" nft add rule inet x forward ip daddr 10.1.7.0/24 meta l4proto icmp accept
}

legacy_rule() {
  "${X[@]}" iptables-legacy -A FORWARD -s 10.9.0.0/16 -j DROP
  "${X[@]}" iptables-legacy -A FORWARD -p udp --dport 53 -j ACCEPT
  "${X[@]}" iptables-legacy -A FORWARD -d 10.1.7.0/24 -p icmp -m comment --comment "no pings" -j DROP
}

nft_policy_counter() {  # iptables-nft: policy drop, whose counter is the one that grows
  "${X[@]}" iptables-nft -P FORWARD DROP
  "${X[@]}" iptables-nft -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  "${X[@]}" iptables-nft -A FORWARD -p tcp -m multiport --dports 22,80 -j ACCEPT
  "${X[@]}" iptables-nft -A FORWARD -i fwb -o fwout -p udp --dport 53 -j ACCEPT
}

nothing() { :; }

scenario nft-rule nft_rule
scenario nft-policy nft_policy
scenario nft-policy-mark nft_policy_mark
scenario nft-policy-accepted nft_policy_accepted
scenario legacy-rule legacy_rule
scenario iptables-nft-policy nft_policy_counter
scenario empty nothing

# No tools on PATH, and an unprivileged reader (every listing refused): recorded, not raised.
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
up
"${X[@]}" env PATH=/nonexistent /usr/bin/python3 - < probes/firewall.py > "$OUT/no-tools.json"
"${X[@]}" setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 - < probes/firewall.py \
  > "$OUT/unprivileged.json"
ip netns del "$NS"
