"""Ranking a trace's verdicts: one primary cause where the path broke, then independent findings."""

from netbench.facts import Interface, NodeFacts
from netbench.findings import Finding
from netbench.trace.paths import Hop
from netbench.trace.verdict import Verdict, device_findings, ranked

LAST = "last hop that saw the probes: n1:flannel0:out; next expected: n1:eth0:out"


def stop(kind: str, node: str = "n1") -> Verdict:
    return Verdict(kind, False, f"the path says {kind}", node, "n1:flannel0:out", [LAST])


def finding(cause: str, node: str = "n1", **extra) -> Finding:
    return Finding(cause, node, f"{cause} on {node}", "flannel0", (f"evidence of {cause}",), f"see {cause}",
                   extra=extra)


def test_without_findings_the_path_verdicts_stand():
    verdicts = [stop("overlay-daemon-down")]
    assert ranked(verdicts, []) == verdicts


def test_a_finding_of_the_stop_node_names_the_cause_and_keeps_what_the_path_showed():
    out = ranked([stop("overlay-daemon-down")], [finding("mtu-mismatch"), finding("lease-missing")])
    primary = out[0]
    assert (primary.kind, primary.node, primary.hop) == ("lease-missing", "n1", "n1:flannel0:out")
    assert primary.evidence[0] == LAST and "from the path alone: overlay-daemon-down" in primary.evidence[1]
    assert "evidence of lease-missing" in primary.evidence and primary.hint == "see lease-missing"
    assert [v.kind for v in out[1:]] == ["mtu-mismatch"]  # an independent finding follows, not dropped


def test_the_node_the_path_stops_at_wins_over_a_more_direct_cause_elsewhere():
    out = ranked([stop("dropped-at-destination", "n2")], [finding("overlay-daemon-down", "n1"),
                                                          finding("fdb-missing", "n2")])
    assert (out[0].kind, out[0].node) == ("fdb-missing", "n2")
    assert [(v.kind, v.node) for v in out[1:]] == [("overlay-daemon-down", "n1")]


def test_a_verdict_the_path_proves_is_not_replaced():
    out = ranked([stop("forwarding-disabled")], [finding("lease-missing")])
    assert [v.kind for v in out] == ["forwarding-disabled", "lease-missing"]


def test_a_certain_firewall_drop_is_primary_and_an_uncertain_one_is_not():
    certain = finding("firewall-drop", "n2", certain=True)
    assert ranked([stop("dropped-at-destination", "n2")], [finding("lease-stale", "n2"), certain])[0].kind == \
        "firewall-drop"
    unsure = finding("firewall-drop", "n2", certain=False)
    out = ranked([stop("dropped-at-destination", "n2")], [unsure, finding("fdb-missing", "n2")])
    assert out[0].kind == "firewall-drop"  # still the most direct finding of that node, by priority …
    out = ranked([stop("no-route", "n2")], [unsure])
    assert out[0].kind == "no-route"  # … but it never replaces what the path proves


def test_a_firewall_drop_confirms_encap_blocked_on_the_same_node():
    blocked = Verdict("encap-blocked", False, "encapsulated packets are not accepted", "n2", "n2:eth0:in", [LAST])
    rule = Finding("firewall-drop", "n2", "inet x input: udp dport 8472 drop", "eth0",
                   ("inet x input udp dport 8472 drop: 0 → 20 packets",), "nft -a list chain inet x input",
                   extra={"certain": True})
    out = ranked([blocked], [rule])
    assert len(out) == 1 and out[0].kind == "encap-blocked"
    assert "inet x input udp dport 8472 drop: 0 → 20 packets" in out[0].evidence
    assert out[0].hint == "nft -a list chain inet x input" and "udp dport 8472 drop" in out[0].message


def test_a_delivered_path_carries_its_findings_as_failing_verdicts():
    delivered = Verdict("delivered", True, "all 20 probes crossed 8 hops")
    out = ranked([delivered], [finding("mtu-mismatch")])
    assert [(v.kind, v.ok) for v in out] == [("delivered", True), ("mtu-mismatch", False)]


def facts(name: str, **ifaces: bool) -> NodeFacts:
    return NodeFacts(name, "198.18.0.1", name, 0, {}, True, {},
                     {n: Interface(n, "bridge", 1500, up) for n, up in ifaces.items()}, [], None, None,
                     None, None, [], {}, [])


def test_a_device_the_path_needs_missing_or_down_is_a_finding():
    hops = [Hop("n1", "nbpod", "in", "pod"), Hop("n1", "docker0", "in", "bridge"),
            Hop("n2", "eth0", "in", "underlay"), Hop("n2", "flannel0", "in", "overlay")]
    found = device_findings(hops, {"n1": facts("n1", docker0=False), "n2": facts("n2", eth0=True)}, {"nbpod"})
    assert [(f.cause, f.node, f.hop) for f in found] == [("device-down", "n1", "n1:docker0:in"),
                                                        ("device-missing", "n2", "n2:flannel0:in")]
    assert found[0].hint == "ip link show docker0"


def test_every_verdict_that_finds_a_fault_gets_a_command_to_see_it():
    from netbench.trace.verdict import with_hints
    src, dst = facts("n1"), facts("n2")
    dst.pod_subnet = "10.1.7.0/24"
    kinds = ["no-route", "forwarding-disabled", "rp-filter-drop", "encap-blocked", "pod-unreachable"]
    out = with_hints([Verdict("delivered", True, "ok")] + [Verdict(k, False, k, "n1", "n1:docker0:in")
                                                           for k in kinds], src, dst)
    assert out[0].hint == ""
    assert [v.hint for v in out[1:]] == ["ip route get 10.1.7.2", "sysctl net.ipv4.ip_forward",
                                         "sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.docker0.rp_filter",
                                         "nft list ruleset", "ip -d link show docker0"]


def test_a_failed_neighbour_entry_alone_does_not_fail_a_delivered_path_but_names_a_break():
    delivered = Verdict("delivered", True, "all 20 probes crossed 6 hops")
    assert ranked([delivered], [finding("neighbour-failed")]) == [delivered]  # a stale FAILED entry
    out = ranked([stop("dropped-at-source")], [finding("neighbour-failed")])
    assert out[0].kind == "neighbour-failed"  # where the path broke, it is the cause


def test_what_small_probes_cannot_feel_never_names_a_break():
    out = ranked([stop("encap-not-reaching-peer")], [finding("mtu-mismatch")])
    assert [v.kind for v in out] == ["encap-not-reaching-peer", "mtu-mismatch"]
    certain = finding("firewall-drop", "n3", certain=True)
    assert ranked([stop("no-route")], [certain])[0].kind == "no-route"  # a proven verdict stands
