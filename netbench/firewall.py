"""Which firewall rule (or chain policy) dropped the probes, from the node's own rule counters.

`snapshot` runs probes/firewall.py over any Runner (one round trip); the rest is pure: nftables, iptables-nft
and iptables-legacy become one model (Chain, Rule); `blame` names a drop rule whose counter grew by the
probes, else an iptables policy whose counter did, else what the probes' 5-tuple meets at the hook statically.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from netbench.findings import Finding, hint
from netbench.remote import NODE_PYTHON, Runner

PROBE = Path(__file__).resolve().parents[1] / "probes" / "firewall.py"
DROPS = {"drop", "reject"}
HOOKS = {h.upper(): h for h in ("prerouting", "input", "forward", "output", "postrouting")}
PRIORITY = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
ALIASES = {"1": "icmp", "6": "tcp", "17": "udp", "8": "echo-request", "0": "echo-reply", "ip": "ipv4", "2": "ipv4"}
NEUTRAL = {"counter", "log", "comment", "notrack", "mangle"}  # nft statements that never stop a match
IPT_OPTS = {"-s": "saddr", "-d": "daddr", "-p": "proto", "-i": "iif", "-o": "oif", "--dport": "dport",
            "--sport": "sport", "--dports": "dport", "--sports": "sport", "--ctstate": "ctstate",
            "--state": "ctstate", "--icmp-type": "icmptype"}
NFT_FIELDS = {("ip", "saddr"): "saddr", ("ip", "daddr"): "daddr", ("ip", "protocol"): "proto",
              ("meta", "l4proto"): "proto", ("meta", "iifname"): "iif", ("meta", "oifname"): "oif",
              ("meta", "iif"): "iif", ("meta", "oif"): "oif", ("meta", "nfproto"): "l3", ("meta", "protocol"): "l3",
              ("ct", "state"): "ctstate", ("icmp", "type"): "icmptype"}
TH = ["tcp", "udp", "sctp", "udplite", "dccp"]  # th: any transport header with ports


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    protocol: str  # icmp | udp | tcp
    sport: int | None = None
    dport: int | None = None
    iif: str | None = None
    oif: str | None = None
    ct_state: str = "new"
    icmp_type: str = "echo-request"

    def __str__(self) -> str:
        return f"{self.protocol} {self.src}→{self.dst}{f':{self.dport}' if self.dport else ''}"


@dataclass(frozen=True)
class Term:  # one test of a rule: field in values (or not); field "?" is one this module cannot evaluate
    field: str
    values: tuple = ()
    negate: bool = False
    text: str = ""


@dataclass(frozen=True)
class Rule:
    key: str  # stable across snapshots: the nft handle, or the iptables text and its occurrence
    text: str
    verdict: str | None  # accept, drop, reject, return, jump, goto; None when the rule does not stop
    target: str | None = None  # the chain of a jump/goto
    packets: int | None = None  # None: the rule has no counter
    bytes: int | None = None
    terms: tuple[Term, ...] = ()
    number: int = 0  # its position in the chain, 1-based (iptables --line-numbers)


@dataclass(frozen=True)
class Chain:
    tool: str  # nft | iptables-nft | iptables-legacy | iptables (whichever `iptables-save` is)
    family: str
    table: str
    name: str
    hook: str | None
    priority: int | None
    policy: str | None
    rules: tuple[Rule, ...] = ()
    packets: int | None = None  # the policy's counter (iptables only)

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.name}"

    def hint(self) -> str:
        return (hint("nft", "-a", "list", "chain", self.family, self.table, self.name) if self.tool == "nft"
                else hint(self.tool, "-t", self.table, "-L", self.name, "-v", "-n", "--line-numbers"))


@dataclass(frozen=True)
class Snapshot:
    chains: tuple[Chain, ...] = ()
    errors: tuple[str, ...] = ()  # a source that could not be read, one line each

    def chain(self, tool: str, table: str, name: str | None) -> Chain | None:
        return next((c for c in self.chains if (c.tool, c.table, c.name) == (tool, table, name)), None)


@dataclass(frozen=True)
class Delta:
    chain: Chain
    rule: Rule | None  # None: the chain's policy
    before: int
    after: int


def snapshot(runner: Runner, timeout: float = 30.0) -> Snapshot:
    """The node's rules and counters now (the only function here with a side effect: one command)."""
    result = runner.run([*NODE_PYTHON, "-"], input=PROBE.read_text(), timeout=timeout, check=False)
    try:
        return parse(json.loads(result.stdout)) if result.ok else Snapshot(errors=(f"probe: {result.why}",))
    except ValueError as exc:
        return Snapshot(errors=(f"probe printed no JSON: {exc}",))


def parse(raw: dict) -> Snapshot:
    """probes/firewall.py's JSON as one model; what cannot be read becomes an error line, never raised."""
    chains, errors, owned = [], [], set()  # owned: tables iptables-nft shows better than nft's xt expressions
    for save in raw.get("iptables") or []:
        tool = str(save.get("binary", "iptables-save")).removesuffix("-save")
        errors += [f"{tool}: {save['error']}"] if save.get("error") else []
        found = _guarded(errors, tool, _iptables, tool, save.get("stdout") or "")
        chains += found
        owned |= {("ip", c.table) for c in found if save.get("variant") == "nft"}
    listing = raw.get("nft") or {}
    errors += [f"nft: {listing['error']}"] if listing.get("error") else []
    if isinstance(listing.get("json"), dict):
        found = _guarded(errors, "nft", _nft, listing["json"], listing.get("text") or "")
        chains += [c for c in found if (c.family, c.table) not in owned]
    if not listing and not raw.get("iptables"):
        errors.append("neither nft nor iptables-save is on the node")
    return Snapshot(tuple(chains), tuple(errors))


def _guarded(errors: list, tool: str, parser, *args) -> list[Chain]:
    """A parser's chains, or none and an error line when the output is not what the tool prints."""
    try:
        return parser(*args)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        errors.append(f"{tool}: unreadable output ({type(exc).__name__}: {exc})")
        return []


# -- nftables -----------------------------------------------------------------------------------
def _nft_texts(text: str) -> dict[tuple, str]:
    """(family, table, chain, handle) → the rule as `nft -a list ruleset` prints it, counters left out."""
    texts, table, chain, buf = {}, None, None, []
    for s in (line.strip() for line in text.splitlines()):
        if m := re.match(r"table (\S+) (\S+) \{", s):
            table, chain = (m[1], m[2]), None
        elif m := re.match(r"chain (\S+) \{", s):
            chain, buf = m[1], []
        elif s == "}" or s.startswith(("set ", "map ", "flowtable ")):
            chain, buf = None, []
        elif s.startswith(("type ", "comment ", "policy ")):
            buf = []  # the chain's own header lines
        elif chain and table and (m := re.search(r"(.*?)\s*# handle (\d+)$", s)):
            texts[(*table, chain, int(m[2]))] = re.sub(r"counter packets \d+ bytes \d+", "counter",
                                                        " ".join(buf + [m[1]]))
            buf = []
        elif chain:
            buf.append(s)  # a rule printed over several lines (a long set)
    return texts


def _nft(doc: dict, text: str) -> list[Chain]:
    texts, heads, rules = _nft_texts(text), [], {}
    for item in doc.get("nftables") or []:
        if c := item.get("chain"):
            heads.append(c)
        elif r := item.get("rule"):
            rules.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)
    return [Chain("nft", *at, c.get("hook"), c.get("prio"), c.get("policy"),
                  tuple(_nft_rule(r, texts.get((*at, r.get("handle"))), n) for n, r in enumerate(rules.get(at, []), 1)))
            for c in heads for at in [(c.get("family"), c.get("table"), c.get("name"))]]


def _nft_rule(r: dict, text: str | None, number: int) -> Rule:
    terms, verdict, target, counter = [], None, None, {}
    for e in r.get("expr") or []:
        (kind, body), = e.items() if isinstance(e, dict) and len(e) == 1 else (("?", e),)
        if kind == "match" and isinstance(body, dict):
            terms += _nft_match(body)
        elif kind == "counter" and isinstance(body, dict):
            counter = body
        elif kind in ("accept", "drop", "reject", "return", "jump", "goto"):
            verdict, target = kind, (body or {}).get("target") if kind in ("jump", "goto") else None
        elif kind not in NEUTRAL:
            terms.append(Term("?", text=kind))
    text = text or " ".join([t.text for t in terms] + [verdict or ""]).strip()
    return Rule(str(r.get("handle")), text, verdict, target, counter.get("packets"), counter.get("bytes"),
                tuple(terms), number)


def _nft_match(m: dict) -> list[Term]:
    left, right, op = m.get("left") or {}, m.get("right"), m.get("op", "==")
    (kind, what), = left.items() if isinstance(left, dict) and len(left) == 1 else (("?", {}),)
    what = what if isinstance(what, dict) else {}
    src, key = what.get("protocol") or kind, what.get("field") or what.get("key")
    name = f"{src} {key}"  # ip saddr, meta l4proto, ct state, udp dport
    if src == "ip6":
        return [Term("l3", ("ipv6",), text=name)]  # never an IPv4 probe
    fld = NFT_FIELDS.get((src, key)) or (key if src in ("udp", "tcp", "th") and key in ("sport", "dport") else None)
    if not fld or op not in ("==", "!=", "in") or isinstance(right, str) and right.startswith("@"):
        return [Term("?", text=f"{name} {op} {right}")]  # comparisons and named sets are not evaluated
    items = right.get("set") if isinstance(right, dict) and "set" in right else right
    implied = [_term("proto", [src])] if src in ("udp", "tcp", "th", "icmp") else []
    return implied + [_term(fld, items if isinstance(items, list) else [items], op == "!=", name)]


def _term(fld: str, items: list, negate: bool = False, name: str = "") -> Term:
    """Values in one form for both tools: networks, (lo, hi) ranges, lower-case names."""
    values: list = []
    for v in items:
        if isinstance(v, dict) and "prefix" in v:
            v = "{addr}/{len}".format(**v["prefix"])
        if isinstance(v, dict) and "range" in v:
            v = "{}-{}".format(*v["range"])
        for x in str(v).split(",") if fld not in ("saddr", "daddr") else [str(v)]:
            lo, _, hi = x.replace(":", "-").partition("-")
            if fld in ("saddr", "daddr") and not re.fullmatch(r"[\d.]+(/\d+)?|[\d.]+-[\d.]+", x):
                return Term("?", text=f"{name or fld} {v}")  # IPv6, or a name
            if fld in ("saddr", "daddr"):
                values.append((ipaddress.ip_address(lo), ipaddress.ip_address(hi)) if hi
                              else ipaddress.ip_network(x, strict=False))
            elif fld.endswith("port") and not (lo.isdigit() and (hi or lo).isdigit()):
                return Term("?", text=f"{name or fld} {v}")  # a service name
            elif fld.endswith("port"):
                values.append((int(lo), int(hi or lo)))
            else:
                values += TH if fld == "proto" and x == "th" else [ALIASES.get(x.lower(), x.lower())]
    return Term(fld, tuple(values), negate, f"{'!' if negate else ''}{name or fld} {','.join(map(str, items))}")


# -- iptables -----------------------------------------------------------------------------------
def _iptables(tool: str, text: str) -> list[Chain]:
    """`iptables-save -c`: tables (*filter), chains (:FORWARD DROP [12:1008]), rules ([20:1680] -A …)."""
    heads: dict[tuple, list] = {}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table and (m := re.match(r":(\S+) (\S+) \[(\d+):(\d+)\]", line)):
            heads[(table, m[1])] = [None if m[2] == "-" else m[2].lower(), int(m[3]), []]
        elif table and (m := re.match(r"(?:\[(\d+):(\d+)\] )?-A (\S+) ?(.*)", line)) and (table, m[3]) in heads:
            heads[(table, m[3])][2].append((m[1], m[2], m[4]))
    chains = []
    for (tbl, name), (policy, packets, lines) in heads.items():
        rules, hook = [], HOOKS.get(name)
        for n, (pkts, nbytes, body) in enumerate(lines, 1):
            key = f"{body}#{sum(b == body for *_, b in lines[:n])}"  # the same rule twice: #1, #2
            rule = _ipt_rule(key, body, n, {c for t, c in heads if t == tbl})
            rules.append(replace(rule, packets=int(pkts), bytes=int(nbytes)) if pkts else rule)
        chains.append(Chain(tool, "ip", tbl, name, hook, PRIORITY.get(tbl) if hook else None, policy,
                            tuple(rules), packets if hook else None))
    return chains


def _ipt_rule(key: str, body: str, number: int, chains: set) -> Rule:
    words = shlex.split(body) if body.count('"') % 2 == 0 else ["?", body]
    terms, verdict, target, negate, i = [], None, None, False, 0
    while i < len(words):
        w, j = words[i], i + 1
        if w == "!":
            negate, i = True, j
            continue
        while j < len(words) and not words[j].startswith(("-", "!")):
            j += 1
        args, i = words[i + 1:j], j
        if w in ("-j", "-g") and args:
            verdict = args[0].lower() if args[0] in ("ACCEPT", "DROP", "REJECT", "RETURN") else None
            if args[0] in chains:
                verdict, target = ("jump" if w == "-j" else "goto"), args[0]
        elif w in IPT_OPTS and args:
            terms.append(_term(IPT_OPTS[w], [args[0]], negate, w))
        elif w not in ("-m", "--comment") and not (verdict or target):
            terms.append(Term("?", text=" ".join([w, *args])))
        negate = False
    return Rule(key, body, verdict, target, terms=tuple(terms), number=number)


# -- matching the probes ------------------------------------------------------------------------
def _test(t: Term, p: Packet) -> bool | None:
    if t.field in ("saddr", "daddr"):
        v = ipaddress.ip_address(p.src if t.field == "saddr" else p.dst)
    else:
        v = {"proto": p.protocol, "sport": p.sport, "dport": p.dport, "iif": p.iif, "oif": p.oif, "l3": "ipv4",
             "ctstate": p.ct_state, "icmptype": p.icmp_type if p.protocol == "icmp" else None}.get(t.field, "?")
    if v == "?" or v is None and (t.field in ("iif", "oif") or t.field.endswith("port") and p.protocol in TH):
        return None  # not evaluable, or the caller does not know the interface / port
    hit = v is not None and any(v in x if isinstance(x, ipaddress.IPv4Network | ipaddress.IPv6Network)
                                else x[0] <= v <= x[1] if isinstance(x, tuple)
                                else v == x or x[-1:] in ("+", "*") and v.startswith(x[:-1]) for x in t.values)
    return hit != t.negate


def matches(rule: Rule, packet: Packet) -> tuple[bool | None, list[str]]:
    """True, False, or None (may match), with the tests that could not be evaluated."""
    results = [(_test(t, packet), t) for t in rule.terms]
    if any(r is False for r, _ in results):
        return False, []
    unknown = [t.text for r, t in results if r is None]
    return (None if unknown else True), unknown


def _reachable(snap: Snapshot, hook: str) -> list[Chain]:
    """The IPv4 base chains at a hook, by priority, then every chain they jump to."""
    todo = sorted((c for c in snap.chains if c.hook == hook and c.family in ("ip", "inet")),
                  key=lambda c: c.priority or 0)
    seen: list[Chain] = []
    while todo:
        if (c := todo.pop(0)) not in seen:
            seen.append(c)
            todo += [x for r in c.rules if r.target for x in [snap.chain(c.tool, c.table, r.target)] if x]
    return seen


def rules_matching(snap: Snapshot, packet: Packet, hook: str) -> list[tuple[Chain, Rule, bool]]:
    """Every rule reachable from the hook that matches the packet (True) or may (False), for listings."""
    return [(c, r, bool(m)) for c in _reachable(snap, hook) for r in c.rules
            if (m := matches(r, packet)[0]) is not False]


def _walk(snap: Snapshot, chain: Chain, p: Packet, counted: set, depth: int = 0):
    """Where the packet ends in a chain by static matching: ("accept"|"drop"|"end", (chain, rule), maybes).
    A rule with a counter matched when its counter grew by the probes, and did not when it did not."""
    maybes: list[str] = []
    for rule in chain.rules:
        m, unknown = matches(rule, p)
        if rule.packets is not None and m is not False:
            m = (chain.tool, chain.table, chain.name, rule.key) in counted
        if m is False or not rule.verdict:
            continue
        if (sub := snap.chain(chain.tool, chain.table, rule.target)) and depth < 16:
            end, hit, more = _walk(snap, sub, p, counted, depth + 1)
            maybes += more
            if m and end != "end":
                return end, hit, maybes
            if end != "end":
                maybes.append(f"{sub.where} {hit[1].text} may {end} ({', '.join(unknown)} not evaluated)")
            if m and rule.verdict == "goto":
                return "end", None, maybes
        elif m and rule.verdict in DROPS | {"accept", "return"}:
            return {"accept": "accept", "return": "end"}.get(rule.verdict, "drop"), (chain, rule), maybes
        elif rule.verdict in DROPS | {"accept"}:
            maybes.append(f"{chain.where} {rule.text} may match ({', '.join(unknown)} not evaluated)")
    return "end", None, maybes


def diff(before: Snapshot, after: Snapshot) -> list[Delta]:
    """Every counter (rule or iptables policy) found in both snapshots, with its two packet counts."""
    out = []
    for c in after.chains:
        if (old := before.chain(c.tool, c.table, c.name)) is None:
            continue
        if c.packets is not None and old.packets is not None:
            out.append(Delta(c, None, old.packets, c.packets))
        prev = {r.key: r.packets for r in old.rules if r.packets is not None}
        out += [Delta(c, r, prev[r.key], r.packets) for r in c.rules if r.packets is not None and r.key in prev]
    return out


def blame(before: Snapshot, after: Snapshot, sent: int, packet: Packet, hook: str, node: str) -> Finding | None:
    """The rule or chain policy that dropped `sent` probes like `packet` at `hook`, or None."""
    grown = [d for d in diff(before, after) if d.after - d.before >= max(1, (sent + 1) // 2)]
    rules = sorted((d for d in grown if d.rule and d.rule.verdict in DROPS and matches(d.rule, packet)[0] is not False),
                   key=lambda d: (d.chain.hook not in (hook, None), abs(d.after - d.before - sent)))
    for d in rules + [d for d in grown if d.rule is None and d.chain.policy == "drop"]:
        what = d.rule.text if d.rule else "policy drop"
        return _finding(node, packet, d.chain, d.rule, f"{what} dropped the probes ({packet}): its counter grew by "
                        f"{d.after - d.before} for {sent} sent", [f"{d.chain.where} {what}: {d.before} → {d.after} "
                        f"packets", f"read with {d.chain.tool}"], sent, d.before, d.after)
    counted = {(d.chain.tool, d.chain.table, d.chain.name, d.rule.key) for d in grown if d.rule}
    for chain in _reachable(after, hook):
        if chain.hook != hook or chain.packets is not None:
            continue  # iptables policies have counters: theirs did not grow
        end, hit, maybes = _walk(after, chain, packet, counted)
        if end == "drop":
            c, rule = hit
            return _finding(node, packet, c, rule, f"{rule.text} matches the probes ({packet})",
                            [f"{c.where} {rule.text}: matches {packet} (no counter)", *maybes], sent)
        if end == "end" and chain.policy == "drop":
            why = f"no rule {'surely ' if maybes else ''}accepts {packet}"
            return _finding(node, packet, chain, None, f"policy drop ({why})",
                            [f"{chain.where}: policy drop ({why})", *maybes], sent)
    return None


def _finding(node: str, packet: Packet, chain: Chain, rule: Rule | None, what: str, evidence: list[str], sent: int,
             before: int | None = None, after: int | None = None) -> Finding:
    certain = before is not None or not any(" may " in e for e in evidence)
    return Finding("firewall-drop", node, f"{chain.tool} {chain.where}: {what}", packet.iif or packet.oif,
                   tuple(evidence), chain.hint(),
                   extra={"tool": chain.tool, "family": chain.family, "table": chain.table, "chain": chain.name,
                          "hook": chain.hook, "rule": rule and rule.text, "number": rule and rule.number, "sent": sent,
                          "packets_before": before, "packets_after": after, "certain": certain})
