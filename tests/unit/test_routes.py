"""`netbench routes`: leases -> next hops -> routes, the state file, and the exact restore of what
`replace` overwrote. The `ip -j` outputs below were printed by iproute2 6.1 (some on the lab's nodes)."""

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netbench import facts, frr, routes
from netbench.cli.routes import routes_app
from netbench.cluster import ClusterNode
from netbench.errors import UserError
from netbench.fleet import SshTarget
from netbench.inventory import Inventory
from netbench.remote import CommandResult
from netbench.routes.apply import _run_node

DATA = Path(__file__).parent / "data"

LEASES = routes.parse_leases({
    "10.1.61.0/24": {"PublicIP": "198.18.0.1", "BackendType": "udp", "BackendData": None},
    "10.1.152.0/24": {"PublicIP": "198.18.0.2", "BackendType": "udp", "BackendData": None},
    "10.1.140.0/24": {"PublicIP": "198.18.1.3", "BackendType": "udp", "BackendData": None},
})
# `ip -j route get` on n1 (198.18.0.1/24 on eth0): n2 shares the segment, n3 is behind the router .254
GET_ONLINK = [{"dst": "198.18.0.2", "dev": "eth0", "prefsrc": "198.18.0.1", "flags": [], "uid": 0, "cache": []}]
GET_ROUTED = [{"dst": "198.18.1.3", "gateway": "198.18.0.254", "dev": "eth0", "prefsrc": "198.18.0.1",
               "flags": [], "uid": 0, "cache": []}]
GET_LOCAL = [{"type": "local", "dst": "198.18.0.1", "dev": "lo", "prefsrc": "198.18.0.1", "flags": [],
              "uid": 0, "cache": ["local"]}]
# flannel vxlan's route on the lab's n1, as `ip -j route show` printed it, and as `ip -d -j` prints it
VXLAN = {"dst": "10.1.152.0/24", "gateway": "10.1.152.0", "dev": "flannel.1", "flags": ["onlink"]}
VXLAN_D = {"type": "unicast", "dst": "10.1.152.0/24", "gateway": "10.1.152.0", "dev": "flannel.1",
           "protocol": "boot", "scope": "global", "flags": ["onlink"]}


# -- leases ------------------------------------------------------------------------------------------------

def test_leases_are_parsed_in_subnet_order_and_bad_ones_refused():
    assert list(LEASES) == ["10.1.61.0/24", "10.1.140.0/24", "10.1.152.0/24"]
    assert LEASES["10.1.140.0/24"] == routes.Lease("10.1.140.0/24", "198.18.1.3", "udp")
    with pytest.raises(UserError, match="10.1.9.0/24"):
        routes.parse_leases({"10.1.9.0/24": {"PublicIP": "not-an-ip"}})


def test_own_lease_by_address_else_by_pod_subnet():
    assert routes.own_lease("198.18.0.2", LEASES).subnet == "10.1.152.0/24"
    # the inventory names the node by hostname: its pod subnet (from facts) finds the lease
    assert routes.own_lease("n3.example", LEASES, "10.1.140.0/24").public_ip == "198.18.1.3"


def test_no_matching_lease_is_refused_with_what_was_looked_for():
    with pytest.raises(routes.RoutesError, match="none has PublicIP 198.18.0.9 or subnet 10.1.7.0/24"):
        routes.own_lease("198.18.0.9", LEASES, "10.1.7.0/24")
    with pytest.raises(routes.RoutesError, match="pod subnet is unknown"):
        routes.own_lease("198.18.0.9", LEASES)


def test_two_leases_of_one_address_need_the_pod_subnet_to_choose():
    leases = {**LEASES, "10.1.200.0/24": routes.Lease("10.1.200.0/24", "198.18.0.1")}
    with pytest.raises(routes.RoutesError, match="2 leases name PublicIP 198.18.0.1"):
        routes.own_lease("198.18.0.1", leases)
    own = routes.own_lease("198.18.0.1", leases, "10.1.61.0/24")
    peers, notes = routes.peer_leases(own, leases)
    assert [p.subnet for p in peers] == ["10.1.140.0/24", "10.1.152.0/24"]
    assert "10.1.200.0/24" in notes[0]


def test_unreadable_etcd_is_a_user_error_naming_the_endpoint():
    inv = Inventory.model_validate({
        "cluster": {"name": "t", "pod_network": "10.1.0.0/16", "etcd": {"endpoints": ["http://127.0.0.1:9"]}},
        "nodes": [{"name": "n1", "address": "198.18.0.1"}, {"name": "n2", "address": "198.18.0.2"}]})
    with pytest.raises(UserError) as caught:
        routes.read_leases(inv, timeout=1)
    assert "cannot read flannel's leases from etcd at http://127.0.0.1:9" in str(caught.value)


# -- static: next hops -------------------------------------------------------------------------------------

def test_next_hop_is_the_peer_when_connected_and_the_gateway_across_a_router():
    assert routes.next_hop("198.18.0.2", GET_ONLINK) == ("198.18.0.2", "eth0", False)
    assert routes.next_hop("198.18.1.3", GET_ROUTED) == ("198.18.0.254", "eth0", False)
    with pytest.raises(routes.RoutesError, match="address of this node"):
        routes.next_hop("198.18.0.1", GET_LOCAL)


def test_static_routes_for_every_peer_lease():
    own = routes.own_lease("198.18.0.1", LEASES)
    peers, _ = routes.peer_leases(own, LEASES)
    found = routes.static_routes(peers, {"198.18.0.2": GET_ONLINK, "198.18.1.3": GET_ROUTED})
    assert [shlex.join(r.replace_argv()) for r in found] == [
        "ip route replace 10.1.140.0/24 via 198.18.0.254 dev eth0 table main proto static",
        "ip route replace 10.1.152.0/24 via 198.18.0.2 dev eth0 table main proto static",
    ]
    with pytest.raises(routes.RoutesError, match="198.18.1.3"):
        routes.static_routes(peers, {"198.18.0.2": GET_ONLINK})


# -- restoring what `replace` overwrote ----------------------------------------------------------------

def test_restore_keeps_onlink_and_the_defaults_ip_leaves_out():
    expected = ["ip", "route", "add", "10.1.152.0/24", "via", "10.1.152.0", "dev", "flannel.1", "table", "main",
                "proto", "boot", "scope", "global", "onlink"]
    assert routes.restore_argv(VXLAN) == expected
    assert routes.restore_argv(VXLAN_D) == expected
    assert routes.route_key(VXLAN) == routes.route_key(VXLAN_D)


def test_restore_carries_metric_source_scope_type_and_route_metrics():
    route = {"type": "unicast", "dst": "10.1.4.0/24", "dev": "br0", "protocol": "boot", "scope": "link",
             "prefsrc": "198.18.5.1", "metric": 100, "flags": ["linkdown"], "metrics": [{"mtu": 1400}]}
    assert shlex.join(routes.restore_argv(route)) == (
        "ip route add 10.1.4.0/24 dev br0 table main proto boot scope link metric 100 src 198.18.5.1 mtu 1400")
    assert routes.restore_argv({"type": "unreachable", "dst": "10.1.5.0/24", "flags": []})[3:5] == [
        "unreachable", "10.1.5.0/24"]


def test_a_route_that_cannot_be_restored_exactly_is_refused():
    multipath = {"dst": "10.1.152.0/24", "flags": [], "nexthops": [{"gateway": "198.18.0.2", "dev": "eth0"}]}
    with pytest.raises(routes.RoutesError, match="nexthops"):
        routes.restore_argv(multipath)


def test_the_lab_vxlan_routes_restore_exactly():
    raw = json.loads((DATA / "facts-vxlan.json").read_text())["raw"]["n1"]["routes"]
    flannel_routes = [r for r in raw if r["dev"] == "flannel.1"]
    assert flannel_routes and all(routes.restore_argv(r)[-1] == "onlink" for r in flannel_routes)


# -- the state file ------------------------------------------------------------------------------------

def _static_state() -> routes.RouteState:
    return routes.RouteState("static", "n1", "2024-05-01T10:00:00+00:00",
                             (routes.StaticRoute("10.1.152.0/24", "198.18.0.2", "eth0"),), (VXLAN,),
                             ("10.1.152.0/24",))


def test_state_file_round_trip():
    state = _static_state()
    assert routes.RouteState.from_json(state.to_json()) == state
    plan = frr.FrrPlan("n1", "bgp", "198.18.0.1", ("198.18.0.0/24",), ("eth0",), "10.1.61.0/24",
                       ("198.18.0.2", "198.18.1.3"))
    frr_state = routes.RouteState("frr", "n1", "2024-05-01T10:00:00+00:00", subnets=("10.1.152.0/24",), plan=plan)
    back = routes.RouteState.from_json(frr_state.to_json())
    assert back == frr_state and back.plan.bgp_peers == ("198.18.0.2", "198.18.1.3")


def test_a_state_file_netbench_did_not_write_is_refused():
    with pytest.raises(routes.RoutesError, match="not a netbench routes state file"):
        routes.RouteState.from_json("{\"version\": 1}")
    with pytest.raises(routes.RoutesError, match="version 9"):
        routes.RouteState.from_json(json.dumps({**json.loads(_static_state().to_json()), "version": 9}))


def test_revert_deletes_netbench_route_then_puts_the_saved_one_back():
    state = _static_state()
    ours = {"dst": "10.1.152.0/24", "gateway": "198.18.0.2", "dev": "eth0", "protocol": "static", "flags": []}
    plan = routes.revert_plan(state, {"10.1.152.0/24": [ours]})
    assert [shlex.join(c) for c in plan.commands] == [
        "ip route del 10.1.152.0/24 via 198.18.0.2 dev eth0 table main proto static",
        "ip route add 10.1.152.0/24 via 10.1.152.0 dev flannel.1 table main proto boot scope global onlink",
    ]
    assert not plan.problems


def test_revert_touches_nothing_that_is_already_right():
    plan = routes.revert_plan(_static_state(), {"10.1.152.0/24": [VXLAN_D]})
    assert plan.commands == [] and len(plan.notes) == 2 and not plan.problems


def test_revert_never_overwrites_a_route_someone_put_there_since():
    theirs = {"dst": "10.1.152.0/24", "gateway": "198.18.0.7", "dev": "eth0", "flags": []}
    plan = routes.revert_plan(_static_state(), {"10.1.152.0/24": [theirs]})
    assert plan.commands == [] and "198.18.0.7" in plan.problems[0]


# -- frr -----------------------------------------------------------------------------------------------

def test_frr_plan_for_a_lab_node_from_its_facts():
    data = json.loads((DATA / "facts-udp.json").read_text())
    subnets, addresses = data["subnets"], data["addresses"]
    leases = routes.parse_leases({subnets[n]: {"PublicIP": addresses[n]} for n in subnets})
    known = facts.analyse("n2", addresses["n2"], data["raw"]["n2"], "10.1.0.0/16")
    own = routes.own_lease(addresses["n2"], leases)
    peers, _ = routes.peer_leases(own, leases)
    plan = routes.frr_plan("n2", "ospf", addresses["n2"], own, peers, known)
    assert plan == frr.FrrPlan("n2", "ospf", "198.18.0.2", ("198.18.0.0/24",), ("eth0",), subnets["n2"],
                               tuple(sorted((addresses["n1"], addresses["n3"]))))
    assert f"ip prefix-list {frr.POLICY} seq 5 permit {subnets['n2']}" in frr.config_lines(plan)


# -- on a node, through a fake connection -------------------------------------------------------------

class FakeNode:
    """Answers the commands netbench sends: route queries from tables, and a state file in memory."""

    name = "n1"

    def __init__(self, show=None, get=None, state=None, raw_facts=None, daemons="zebra ospfd", config="",
                 learned=()):
        self.show, self.get, self.state = show or {}, get or {}, state
        self.raw_facts, self.daemons, self.config, self.learned = raw_facts, daemons, config, learned
        self.calls: list[list[str]] = []

    def run(self, argv, *, timeout=None, check=True, input=None, privileged=True):
        commands = [shlex.split(line) for line in argv[2].splitlines()[1:]] if argv[:2] == ["sh", "-c"] and \
            argv[2].startswith("set -e") else [list(argv)]
        out = []
        for cmd in commands:
            self.calls.append(cmd)
            if cmd == routes.read_state_argv():
                out.append(self.state or "")
            elif cmd[0] == "echo":
                out.append(cmd[1] + "\n")
            elif cmd[:4] == ["ip", "-d", "-j", "route"]:
                out.append(json.dumps(self.show.get(cmd[-1], [])) + "\n")
            elif cmd[:4] == ["ip", "-j", "route", "get"]:
                out.append(json.dumps(self.get[cmd[-1]]) + "\n")
            elif cmd[-1] == routes.STATE_FILE and cmd[0] == "sh":
                self.state = input
            elif cmd == facts.GATHER:
                out.append(json.dumps(self.raw_facts))
            elif cmd == ["vtysh", "-c", "show daemons"]:
                out.append(self.daemons)
            elif cmd == ["vtysh", "-c", "show running-config"]:
                out.append(self.config)
            elif cmd[:4] == ["ip", "-j", "route", "show"]:
                out.append(json.dumps([{"dst": d, "gateway": "198.18.0.9", "dev": "eth0", "protocol": "ospf",
                                        "metric": 20, "flags": []} for d in self.learned]))
            elif cmd == routes.remove_state_argv():
                self.state = None
            elif cmd[:4] == ["vtysh", "-c", "configure terminal", "-c"]:
                self.config = "\n".join(cmd[4::2])  # what vtysh was told, one command per -c
            elif cmd[:1] == ["ip"] and cmd[1:3] in (["route", "replace"], ["route", "del"], ["route", "add"]):
                pass  # route changes: the tests read them from self.calls
            elif cmd[:3] == ["mkdir", "-p", "-m"] or cmd[:2] == ["chmod", "700"]:
                pass
            else:  # a command this fake does not know: the test must fail, not pass on an empty answer
                raise AssertionError(f"FakeNode got an unexpected command: {cmd}")
        return CommandResult("n1", shlex.join(argv), 0, "".join(out), "")


SPEC = ClusterNode(SshTarget("n1", "198.18.0.1"))


def _apply(node, dry_run=False):
    job = routes.Job("static", "10.1.0.0/16", LEASES, dry_run=dry_run)
    return _run_node(routes.apply_static, SPEC, job)(node)


def test_apply_records_the_state_before_it_changes_any_route():
    node = FakeNode(show={"10.1.152.0/24": [VXLAN_D]}, get={"198.18.0.2": GET_ONLINK, "198.18.1.3": GET_ROUTED})
    out = _apply(node)
    assert out.ok and out.status == "applied"
    changes = [c for c in node.calls if c[:3] == ["ip", "route", "replace"] or c[-1] == routes.STATE_FILE]
    assert changes[1][-1] == routes.STATE_FILE and changes[0] == routes.read_state_argv()
    assert [c[3] for c in changes[2:]] == ["10.1.140.0/24", "10.1.152.0/24"]
    saved = routes.RouteState.from_json(node.state)
    assert saved.previous == (VXLAN_D,) and [r.via for r in saved.routes] == ["198.18.0.254", "198.18.0.2"]


def test_dry_run_and_a_second_apply_change_nothing():
    node = FakeNode(get={"198.18.0.2": GET_ONLINK, "198.18.1.3": GET_ROUTED})
    out = _apply(node, dry_run=True)
    assert out.status == "planned" and node.state is None
    assert not any(c[:3] == ["ip", "route", "replace"] for c in node.calls)
    node = FakeNode(state=_static_state().to_json())
    out = _apply(node)
    assert not out.ok and "already applied at 2024-05-01T10:00:00+00:00" in out.error
    assert node.calls == [routes.read_state_argv()]


def test_revert_without_a_state_file_is_not_an_error():
    out = _run_node(routes.revert_node, SPEC, routes.Job("revert", "10.1.0.0/16"))(FakeNode())
    assert out.ok and out.status == "nothing to revert"


def _apply_frr(node):
    job = routes.Job("frr", "10.1.0.0/16", LEASES, "ospf", learn_timeout=0)
    return _run_node(routes.apply_frr, SPEC, job)(node)


def _udp_facts():
    return json.loads((DATA / "facts-udp.json").read_text())["raw"]["n1"]


def test_frr_refused_when_ospfd_is_not_running_leaves_no_state():
    node = FakeNode(raw_facts=_udp_facts(), daemons="zebra bgpd")
    out = _apply_frr(node)
    assert not out.ok and "ospfd is not running (running: zebra, bgpd)" in out.error
    assert node.state is None and not any(c[0] == "vtysh" and "configure terminal" in c for c in node.calls)


def test_frr_refuses_a_routing_block_it_did_not_write():
    node = FakeNode(raw_facts=_udp_facts(), config="router ospf\n ospf router-id 1.2.3.4\nexit\n")
    out = _apply_frr(node)
    assert not out.ok and "`router ospf` that netbench did not write" in out.error and node.state is None


def test_frr_apply_records_the_plan_then_configures_the_running_config_only():
    node = FakeNode(raw_facts=_udp_facts(), learned=["10.1.140.0/24", "10.1.152.0/24"])
    out = _apply_frr(node)
    assert out.ok and out.status == "applied", out.error
    state = routes.RouteState.from_json(node.state)
    assert state.kind == "frr" and state.plan.pod_subnet == "10.1.61.0/24"
    assert state.plan.networks == ("198.18.0.0/24",) and state.subnets == ("10.1.140.0/24", "10.1.152.0/24")
    configure = next(c for c in node.calls if c[0] == "vtysh" and "configure terminal" in c)
    assert "write memory" not in configure and "network 198.18.0.0/24 area 0" in configure
    assert "learned 10.1.140.0/24, 10.1.152.0/24 over ospf" in out.notes


# -- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [(["apply", "quagga"], "choose one of static, frr"),
                                           (["apply", "static", "--routing", "bgp"], "--routing is for"),
                                           (["apply", "frr", "--routing", "isis"], "--routing 'isis'")])
def test_bad_arguments_are_user_errors_before_anything_is_read(args, message):
    result = CliRunner().invoke(routes_app, args)
    assert isinstance(result.exception, UserError) and message in str(result.exception)


def test_frr_apply_picks_the_own_lease_by_pod_subnet_when_a_stale_one_shares_the_address():
    stale = routes.parse_leases({"10.1.200.0/24": {"PublicIP": "198.18.0.1", "BackendType": "udp"}})
    job = routes.Job("frr", "10.1.0.0/16", {**LEASES, **stale}, "ospf", learn_timeout=0)
    node = FakeNode(raw_facts=_udp_facts(), learned=["10.1.140.0/24", "10.1.152.0/24"])
    out = _run_node(routes.apply_frr, SPEC, job)(node)
    assert out.ok, out.error
    assert routes.RouteState.from_json(node.state).plan.pod_subnet == "10.1.61.0/24"
    assert any("skipped 10.1.200.0/24" in note for note in out.notes), out.notes


def test_frr_apply_filters_the_kernel_and_keeps_the_key_out_of_the_state_file():
    job = routes.Job("frr", "10.1.0.0/16", LEASES, "ospf", learn_timeout=0, auth_key="0123456789abcdef")
    node = FakeNode(raw_facts=_udp_facts(), learned=["10.1.140.0/24", "10.1.152.0/24"])
    out = _run_node(routes.apply_frr, SPEC, job)(node)
    assert out.ok, out.error
    assert f"ip protocol ospf route-map {frr.IMPORT}" in node.config
    assert f"ip prefix-list {frr.POD_NETWORK} seq 5 permit 10.1.0.0/16 le 32" in node.config
    assert "ip ospf message-digest-key 1 md5 0123456789abcdef" in node.config
    assert "0123456789abcdef" not in node.state and "0123456789abcdef" not in "\n".join(out.actions + out.notes)
    assert routes.RouteState.from_json(node.state).plan.pod_network == "10.1.0.0/16"
    assert any("zebra installs only routes inside 10.1.0.0/16" in a for a in out.actions)
