import pytest

from netbench.errors import UserError
from netbench.lab import linkem
from netbench.lab.topology import MGMT_ADDRESS, LinkShape


@pytest.fixture
def no_netem(monkeypatch):
    monkeypatch.setattr(linkem, "netem_available", lambda: False)


def test_rate_uses_tbf_with_a_bucket_bigger_than_a_gso_packet():
    tc, nft = linkem.commands(LinkShape(rate="1gbit"))
    assert nft is None
    (cmd,) = tc
    assert cmd[:8] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate"]
    assert int(cmd[cmd.index("burst") + 1]) >= 65536


def test_loss_is_an_nftables_rule_that_spares_the_management_address():
    tc, nft = linkem.commands(LinkShape(rate="100mbit", loss=1.5))
    assert "tbf" in tc[0]
    rule = next(line for line in nft.splitlines() if "drop" in line).split()
    assert rule == ["oifname", '"eth0"', "ip", "daddr", "!=", MGMT_ADDRESS, "numgen", "random", "mod", "10000",
                    "<", "150", "counter", "drop"]


def test_delay_without_netem_is_a_clear_user_error(no_netem):
    with pytest.raises(UserError, match="netem"):
        linkem.check_supported(LinkShape(delay="2ms"))


def test_netem_carries_delay_and_rate_and_loss_stays_in_nftables():
    tc, nft = linkem.commands(LinkShape(rate="1gbit", delay="2ms", loss=1.0))
    assert tc == [["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "netem",
                   "delay", "2ms", "rate", "1gbit"]]
    assert "numgen random mod 10000 < 100 counter drop" in nft
