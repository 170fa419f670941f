#!/usr/bin/env bash
# Installs what netbench and its lab need, and only what is missing: safe to run on every `make`.
# Debian packages are the real parts the lab runs (etcd, sshd, FRR, iperf3, tcpdump, the CNI plugins in
# /usr/lib/cni that the k8s flavour's nodes make their pods with); services are
# never started in the root namespace by the install: the lab starts its own copies inside namespaces.
set -euo pipefail
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."

APT_PACKAGES=(iproute2 iputils-ping iperf3 tcpdump openssh-server openssh-client etcd-server etcd-client
              frr nftables iptables socat sockperf procps util-linux psmisc containernetworking-plugins
              chromium fonts-dejavu-core)  # chromium: the report is checked in a real browser

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  # Keep package scripts from starting sshd/etcd/frr in the root namespace.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  trap '[ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python side: the package (editable) with its dev extras, when any requirement is not importable.
if ! "$PYTHON" - <<'PY' 2>/dev/null
import importlib.metadata as md, sys
import netbench, probes  # noqa: F401  (the checkout itself must be importable)
from importlib.metadata import requires
need = [r.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip() for r in requires("netbench") or []]
for name in need:
    md.version(name)
loc = netbench.__file__
sys.exit(0 if loc.startswith(__import__("os").getcwd()) else 1)
PY
then
  echo "bootstrap: pip install -e .[dev]"
  "$PYTHON" -m pip install -q --disable-pip-version-check -e '.[dev]'
fi
