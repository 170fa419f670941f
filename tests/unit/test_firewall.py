"""Firewall blame on real captures: probes/firewall.py run in a throwaway namespace with real nft,
iptables-nft and iptables-legacy, before and after 20 pings 10.1.5.2 → 10.1.7.2 forwarded from fwb to
fwout (and 5 UDP packets to 10.1.9.2:53); see data/firewall/capture.sh for how each was made."""

import json
from pathlib import Path

import pytest

from netbench import firewall
from netbench.firewall import Packet
from netbench.remote import CommandResult

DATA = Path(__file__).parent / "data" / "firewall"
PING = Packet("10.1.5.2", "10.1.7.2", "icmp", iif="fwb", oif="fwout")


def load(name: str) -> firewall.Snapshot:
    return firewall.parse(json.loads((DATA / f"{name}.json").read_text()))


def pair(name: str):
    return load(f"{name}-before"), load(f"{name}-after")


def test_an_nft_drop_rule_whose_counter_grew_by_the_probes_is_named():
    before, after = pair("nft-rule")
    f = firewall.blame(before, after, 20, PING, "forward", "n2")
    assert (f.cause, f.node, f.hop) == ("firewall-drop", "n2", "fwb")
    assert "inet filter forward" in f.message and "icmp type echo-request" in f.message
    assert f.evidence[0] == ("inet filter forward ip daddr 10.1.7.0/24 icmp type echo-request counter drop: "
                             "0 → 20 packets")
    assert f.hint == "nft -a list chain inet filter forward"
    assert f.extra["certain"] and f.extra["packets_after"] == 20


def test_rules_that_did_not_see_the_probes_are_not_blamed():
    before, after = pair("nft-rule")
    grew = {d.rule.text: d.after - d.before for d in firewall.diff(before, after)}
    assert grew["ip daddr 10.1.9.0/24 udp dport 53 counter reject with icmp port-unreachable"] == 5
    assert grew["ip saddr 10.9.0.0/16 counter drop"] == 0
    # 5 UDP packets met the reject: fewer than half of 20 probes, so it is not their rule
    udp = Packet("10.1.5.2", "10.1.9.2", "udp", 40000, 53, iif="fwb", oif="fwout")
    assert firewall.blame(before, after, 20, udp, "forward", "n2") is None
    # and a drop rule that grew by the probes is not blamed for a packet it cannot match
    other = Packet("10.1.5.2", "10.1.8.2", "icmp", iif="fwb")
    assert firewall.blame(before, after, 20, other, "forward", "n2") is None


def test_an_nft_policy_drop_without_counters_is_named_by_static_matching():
    before, after = pair("nft-policy")
    f = firewall.blame(before, after, 20, PING, "forward", "n2")
    assert f.cause == "firewall-drop" and f.extra["chain"] == "forward" and f.extra["rule"] is None
    assert f.evidence == ("inet x forward: policy drop (no rule accepts icmp 10.1.5.2→10.1.7.2)",)
    assert f.hint == "nft -a list chain inet x forward" and f.extra["certain"]


@pytest.mark.parametrize("packet", [
    Packet("10.1.5.2", "10.1.8.2", "udp", 40000, 8285, iif="fwb", oif="fwout"),  # ip daddr … udp dport 8285
    Packet("10.1.5.2", "10.1.7.2", "tcp", 40000, 80, iif="fwb", oif="fwout"),  # tcp dport { 22, 80 }
    Packet("192.168.0.9", "10.1.7.2", "icmp", iif="fwb", oif="fwout"),  # ip saddr { …, 192.168.0.0/24 }
    Packet("10.1.5.2", "10.1.7.2", "icmp", iif="lo"),  # iifname "lo"
    Packet("10.1.5.2", "10.1.7.2", "icmp", iif="fwb", ct_state="established"),
], ids=["udp-port", "tcp-set", "saddr-set", "iifname", "ct-state"])
def test_an_accept_rule_for_the_packets_5_tuple_prevents_blaming_the_policy(packet):
    before, after = pair("nft-policy")
    assert firewall.blame(before, after, 20, packet, "forward", "n2") is None


def test_an_accept_rule_added_for_the_probes_prevents_blame():
    before, after = pair("nft-policy-accepted")
    assert firewall.blame(before, after, 20, PING, "forward", "n2") is None
    assert firewall.blame(before, after, 20, PING, "input", "n2") is None  # no chain at that hook


def test_what_cannot_be_evaluated_may_match_and_the_evidence_says_so():
    before, after = pair("nft-policy-mark")
    f = firewall.blame(before, after, 20, PING, "forward", "n2")
    assert "no rule surely accepts" in f.message and not f.extra["certain"]
    assert "inet x forward meta mark 0x00000001 accept may match (meta mark == 1 not evaluated)" in f.evidence


def test_an_iptables_legacy_rule_whose_counter_grew_is_named():
    before, after = pair("legacy-rule")
    f = firewall.blame(before, after, 20, PING, "forward", "n2")
    assert f.message.startswith("iptables-legacy ip filter FORWARD: -d 10.1.7.0/24 -p icmp")
    assert f.evidence[0] == ('ip filter FORWARD -d 10.1.7.0/24 -p icmp -m comment --comment "no pings" -j DROP: '
                             "0 → 20 packets")
    assert f.hint == "iptables-legacy -t filter -L FORWARD -v -n --line-numbers"
    assert f.extra["number"] == 3


def test_an_iptables_policy_counter_that_grew_is_named_and_nft_does_not_show_the_table_twice():
    before, after = pair("iptables-nft-policy")
    assert [c.tool for c in after.chains] == ["iptables-nft"] * 3  # not again as nft's `table ip filter`
    forward = after.chain("iptables-nft", "filter", "FORWARD")
    assert (forward.hook, forward.policy, forward.packets) == ("forward", "drop", 20)
    f = firewall.blame(before, after, 20, PING, "forward", "n2")
    assert f.evidence[0] == "ip filter FORWARD policy drop: 0 → 20 packets"
    assert f.hint == "iptables-nft -t filter -L FORWARD -v -n --line-numbers"
    udp = Packet("10.1.5.2", "10.1.9.2", "udp", 40000, 53, iif="fwb", oif="fwout")
    assert [r.text for _, r, _ in firewall.rules_matching(after, udp, "forward")] == [
        "-i fwb -o fwout -p udp -m udp --dport 53 -j ACCEPT"]


def test_half_the_probes_is_enough_and_fewer_is_not():
    before, after = pair("nft-rule")
    assert firewall.blame(before, after, 40, PING, "forward", "n2") is not None  # 20 of 40
    assert firewall.blame(before, after, 41, PING, "forward", "n2") is None


def test_an_nft_rule_without_counter_that_matches_the_5_tuple_is_named():
    before, after = pair("nft-policy")
    # the chain's own ruleset, read as if its `tcp dport { 22, 80 } accept` were a drop
    chain = after.chains[0]
    rules = tuple(firewall.Rule(r.key, r.text.replace("accept", "drop"), "drop" if "dport" in r.text else r.verdict,
                                terms=r.terms, number=r.number) for r in chain.rules)
    snap = firewall.Snapshot((firewall.replace(chain, rules=rules),))
    tcp = Packet("10.1.5.2", "10.1.7.2", "tcp", 40000, 22, iif="fwb")
    f = firewall.blame(snap, snap, 20, tcp, "forward", "n2")
    assert f.evidence[0] == "inet x forward tcp dport { 22, 80 } drop: matches tcp 10.1.5.2→10.1.7.2:22 (no counter)"


@pytest.mark.parametrize("name", ["empty-after", "no-tools", "unprivileged"])
def test_missing_or_refused_tools_give_no_crash_and_no_blame(name):
    snap = load(name)
    assert snap.chains == ()
    assert firewall.blame(snap, snap, 20, PING, "forward", "n2") is None
    if name == "unprivileged":
        assert [e.split(":")[0] for e in snap.errors] == ["iptables-nft", "iptables-legacy", "nft"]
    if name == "no-tools":
        assert snap.errors == ("neither nft nor iptables-save is on the node",)


def test_unparseable_outputs_give_no_crash():
    raw = json.loads((DATA / "legacy-rule-after.json").read_text())
    raw["iptables"][1]["stdout"] = "*filter\n:FORWARD DROP [x:y]\n[3:4] -A FORWARD -s not-an-ip -j DROP\ngarbage\n"
    raw["nft"] = {"json": {"nftables": [{"rule": {"expr": [{"match": {"left": 3}}, 7]}}, "junk"]}, "error": None}
    snap = firewall.parse(raw)
    assert firewall.blame(snap, snap, 20, PING, "forward", "n2") is None
    assert any(e.startswith("nft: unreadable output") for e in snap.errors)
    assert snap.chains == ()  # FORWARD's head line is not iptables-save's, so its rule has no chain


class Refused:
    name = "n2"

    def __init__(self, result):
        self.result = result

    def run(self, argv, *, timeout=30.0, check=True, input=None):
        return self.result


def test_snapshot_records_a_failed_or_garbled_probe_as_an_error():
    bad = firewall.snapshot(Refused(CommandResult("n2", "python3 -", 127, "", "sh: python3: not found")))
    assert bad.errors == ("probe: sh: python3: not found",)
    garbled = firewall.snapshot(Refused(CommandResult("n2", "python3 -", 0, "not json", "")))
    assert garbled.errors[0].startswith("probe printed no JSON")
    stored = (DATA / "nft-rule-after.json").read_text()
    good = firewall.snapshot(Refused(CommandResult("n2", "python3 -", 0, stored, "")))
    assert [c.where for c in good.chains] == ["inet filter forward"]
