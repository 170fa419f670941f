"""probes/cni.py, the node side of CNI pods: the chain run as the CNI spec says (environment, config
on stdin, prevResult, DEL in reverse), against small plugin programs that record what they were given."""

import json
import os
import stat

import pytest

from probes import cni

# A plugin: logs its CNI_* environment and stdin, answers with a result naming itself (ADD), or fails
# when its config says so.
PLUGIN = r"""#!/usr/bin/env python3
import json, os, sys
conf = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
with open(os.path.join(os.path.dirname(sys.argv[0]), "..", "log"), "a") as f:  # the env is CNI's alone
    f.write(json.dumps({"plugin": os.path.basename(sys.argv[0]), "env": env, "conf": conf}) + "\n")
if conf.get("fail") == env["CNI_COMMAND"]:
    print(json.dumps({"cniVersion": conf["cniVersion"], "code": 11, "msg": "no", "details": "injected"}))
    sys.exit(1)
if env["CNI_COMMAND"] == "ADD":
    prev = conf.get("prevResult") or {"cniVersion": conf["cniVersion"], "interfaces": [], "ips": []}
    prev = dict(prev, interfaces=prev["interfaces"] + [{"name": os.path.basename(sys.argv[0])}])
    if not prev["ips"]:
        prev["ips"] = [{"address": "10.244.7.9/24", "gateway": "10.244.7.1"}]
    print(json.dumps(prev))
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bridge", "portmap"):
        path = bin_dir / name
        path.write_text(PLUGIN)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "log"
    monkeypatch.setenv("NB_CNI_PATH", str(bin_dir))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls


def network(version="1.0.0", **bridge):
    return {"name": "cbr0", "cniVersion": version,
            "plugins": [{"type": "bridge", "bridge": "cni0", **bridge},
                        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def test_add_runs_the_chain_in_order_each_plugin_given_the_previous_result(plugins):
    result = cni.chain_add(network(), "netbench-nb-probe-1", "/run/netns/nb-probe-1", "eth0", cni.plugin_path())
    bridge, portmap = plugins()
    assert [bridge["plugin"], portmap["plugin"]] == ["bridge", "portmap"]
    for call in (bridge, portmap):
        assert call["env"]["CNI_COMMAND"] == "ADD" and call["env"]["CNI_CONTAINERID"] == "netbench-nb-probe-1"
        assert call["env"]["CNI_NETNS"] == "/run/netns/nb-probe-1" and call["env"]["CNI_IFNAME"] == "eth0"
        assert os.environ["NB_CNI_PATH"] in call["env"]["CNI_PATH"].split(":")
        assert (call["conf"]["name"], call["conf"]["cniVersion"]) == ("cbr0", "1.0.0")  # the list's, injected
    assert "prevResult" not in bridge["conf"] and bridge["conf"]["bridge"] == "cni0"
    assert portmap["conf"]["prevResult"]["interfaces"] == [{"name": "bridge"}]
    assert "capabilities" not in portmap["conf"] and "runtimeConfig" not in portmap["conf"]  # none filled
    assert [i["name"] for i in result["interfaces"]] == ["bridge", "portmap"]
    assert cni.address_of(result, "/run/netns/nb-probe-1", "eth0") == ("10.244.7.9/24", "10.244.7.1")


@pytest.mark.parametrize("version, with_prev", [("1.0.0", True), ("0.4.0", True), ("0.3.1", False)])
def test_del_runs_in_reverse_with_the_add_result_from_0_4_on(plugins, version, with_prev):
    added = {"cniVersion": version, "ips": [{"address": "10.244.7.9/24"}]}
    assert cni.chain_del(network(version), added, "netbench-nb-probe-1", "", "eth0", cni.plugin_path()) == []
    calls = plugins()
    assert [c["plugin"] for c in calls] == ["portmap", "bridge"]
    assert all(c["env"]["CNI_COMMAND"] == "DEL" and c["env"]["CNI_NETNS"] == "" for c in calls)
    assert all(("prevResult" in c["conf"]) is with_prev for c in calls)
    if with_prev:
        assert calls[0]["conf"]["prevResult"] == added


def test_a_refused_del_does_not_stop_the_others_and_is_reported(plugins):
    errors = cni.chain_del(network(fail="DEL"), None, "c1", "", "eth0", cni.plugin_path())
    assert [c["plugin"] for c in plugins()] == ["portmap", "bridge"]  # the bridge's IPAM still got its DEL
    assert errors == ["bridge DEL: no (injected) [code 11]"]


def test_a_failed_add_names_the_plugin_and_its_message(plugins):
    with pytest.raises(cni.CniError, match=r"^bridge ADD: no \(injected\) \[code 11\]$"):
        cni.chain_add(network(fail="ADD"), "c1", "/run/netns/x", "eth0", cni.plugin_path())
    assert [c["plugin"] for c in plugins()] == ["bridge"]


def test_a_missing_plugin_is_named_with_where_it_was_looked_for(plugins):
    with pytest.raises(cni.CniError, match="CNI plugin 'flannel' not found in .*bin"):
        cni.find_plugin("flannel", cni.plugin_path())
    with pytest.raises(cni.CniError, match="not a plugin name"):
        cni.find_plugin("../../bin/sh", cni.plugin_path())


def test_conflist_and_single_conf_files_load_as_lists(tmp_path):
    (tmp_path / "10-flannel.conflist").write_text(json.dumps(network("0.3.1")))
    (tmp_path / "10-old.conf").write_text(json.dumps({"name": "mynet", "type": "bridge", "ipam": {}}))
    (tmp_path / "bad.conflist").write_text("{")
    (tmp_path / "empty.conflist").write_text(json.dumps({"name": "x", "plugins": []}))
    assert [p["type"] for p in cni.load_network(str(tmp_path / "10-flannel.conflist"))["plugins"]] == ["bridge",
                                                                                                      "portmap"]
    old = cni.load_network(str(tmp_path / "10-old.conf"))
    assert (old["name"], old["cniVersion"], [p["type"] for p in old["plugins"]]) == ("mynet", "0.2.0", ["bridge"])
    for name in ("bad.conflist", "empty.conflist", "missing.conf"):
        with pytest.raises(cni.CniError, match=name):
            cni.load_network(str(tmp_path / name))


def test_the_address_is_the_pod_interfaces_whatever_the_result_version():
    v1 = {"interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
          "ips": [{"address": "fd00::5/64", "interface": 2}, {"address": "10.244.7.3/24", "gateway": "10.244.7.1",
                                                               "interface": 2}]}
    assert cni.address_of(v1, "/run/netns/p", "eth0") == ("10.244.7.3/24", "10.244.7.1")
    v02 = {"ip4": {"ip": "10.1.5.9/24", "gateway": "10.1.5.1"}}
    assert cni.address_of(v02, "/run/netns/p", "eth0") == ("10.1.5.9/24", "10.1.5.1")
    with pytest.raises(cni.CniError, match="no IPv4 address"):
        cni.address_of({"ips": []}, "/run/netns/p", "eth0")


def test_host_local_store_is_its_data_dir_and_the_network_name():
    assert cni.ipam_store(network(ipam={"type": "host-local"})) == "/var/lib/cni/networks/cbr0"
    assert cni.ipam_store(network(ipam={"type": "host-local", "dataDir": "/srv/ipam"})) == "/srv/ipam/cbr0"
    assert cni.ipam_store(network(ipam={"type": "whereabouts"})) is None


def test_bad_names_are_refused_before_anything_runs(capsys):
    assert cni.main(["add", "--conf", "/x", "--pod", "nb-x; reboot", "--container-id", "c"]) == 1
    assert "must match" in json.loads(capsys.readouterr().out)["error"]
    assert cni.main(["add", "--conf", "/x", "--pod", "nb-probe-1", "--container-id", "$(id)"]) == 1
    assert "container id" in json.loads(capsys.readouterr().out)["error"]
