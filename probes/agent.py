#!/usr/bin/env python3
"""netbench's measurement agent: a UDP echo server and a UDP request/response latency client.

netbench copies this one file to nodes and runs it inside probe pods, so it needs nothing but a bare
python3 (standard library, Python 3.9+, Linux). Every command prints one JSON object on stdout (a
failure prints {"error": ...} and exits non-zero); diagnostics go to stderr.

  agent.py serve --bind ADDR --port PORT [--idle-exit S] [--ready-file PATH]
  agent.py ping --dst ADDR --port PORT [--count N] [--interval S] [--size B] [--timeout S]
                [--warmup N] [--timestamping auto|kernel|kernel-rx|user]
  agent.py start --workdir DIR < SPEC      (the run's servers, detached; see cmd_start)
  agent.py session [--idle-exit S]         (one ping per stdin line, one answer line each; see cmd_session)
  agent.py version

Output of ping (sent = count of recorded requests; lost = sent - received, including sends the kernel
refused, which send_errors counts on its own):
  {"dst", "port", "size", "count", "sent", "received", "lost", "stale", "send_errors",
   "timestamping": "kernel" | "kernel-rx" | "user", "rtt_ns": [per echo, in send order], "wall_s"}
serve prints {"ready": true, "bind", "port", "pid"} once it is bound, then nothing more on stdout.

ping takes each RTT from kernel software timestamps: the TX stamp from the socket's error queue and
the RX stamp from the reply's ancillary data, both taken in the network stack, so the interpreter's
own time (system calls, wake-ups, bytecode) stays out of the number. Where the kernel gives no TX
stamps it uses a clock read just before sendto ("kernel-rx"); where it gives nothing, user space.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import select
import signal
import socket
import struct
import sys
import time

AGENT = "netbench-agent"
VERSION = 1

# Linux's asm-generic values (x86, arm, arm64, riscv...); the socket module lacks most of them.
SO_TIMESTAMPNS = 35
SO_TIMESTAMPING = 37
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SCM_TIMESTAMPING = SO_TIMESTAMPING
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_RCVTIMEO_OLD = 20  # with a native struct timeval, as SO_TIMESTAMPING_OLD uses native timespecs
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
SOL_IP, IP_RECVERR = 0, 11
SOL_IPV6, IPV6_RECVERR = 41, 25
SO_EE_ORIGIN_TIMESTAMPING = 4
SCM_TSTAMP_SND = 0
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)

_TS_BASE = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
# Tried in order. OPT_ID numbers the sends, so a TX stamp is matched to its request without the
# packet; TSONLY then spares the kernel looping the packet back (and works where the
# net.core.tstamp_allow_data sysctl is 0). Older kernels refuse unknown flags with EINVAL.
TIMESTAMPING_FLAGS = (
    _TS_BASE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY,
    _TS_BASE | SOF_TIMESTAMPING_OPT_ID,
    _TS_BASE,
)
METHODS = ("kernel", "kernel-rx", "user")  # best first

MAGIC = b"NBAGENT1"
HEADER = struct.Struct("!8sQ")  # magic, sequence number; zero padding follows
MAX_PAYLOAD = 65507  # the largest UDP payload over IPv4
EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err, without the offender address
ANC_SIZE = 512  # room for SCM_TIMESTAMPING and IP_RECVERR together


class AgentError(Exception):
    """A failure the user can act on: reported as one message, exit status 1."""


def log(msg: str) -> None:
    sys.stderr.write(f"agent[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------
# Pure helpers: payloads and the kernel's ancillary structures


def build_payload(seq: int, size: int) -> bytes:
    """Magic + big-endian sequence number, zero-padded to `size` bytes of UDP payload."""
    if size < HEADER.size:
        raise ValueError(f"size {size} is smaller than the {HEADER.size}-byte header")
    return HEADER.pack(MAGIC, seq) + bytes(size - HEADER.size)


def parse_payload(data: bytes) -> int | None:
    """The sequence number of one of our payloads, or None for anything else."""
    if len(data) < HEADER.size or bytes(data[:8]) != MAGIC:
        return None
    return HEADER.unpack_from(data)[1]


def _timespecs(data: bytes, count: int) -> list[int]:
    # The non-_NEW socket options pass a native struct timespec: two 64-bit longs on 64-bit
    # kernels, two 32-bit longs on 32-bit ones; the length tells which.
    if len(data) >= 16 * count:
        fmt = "=" + "qq" * count
    elif len(data) >= 8 * count:
        fmt = "=" + "ii" * count
    else:
        raise ValueError(f"{len(data)} bytes cannot hold {count} struct timespec")
    v = struct.unpack_from(fmt, data)
    return [v[i] * 1_000_000_000 + v[i + 1] for i in range(0, 2 * count, 2)]


def parse_scm_timestamping(data: bytes) -> int:
    """SCM_TIMESTAMPING's software stamp (the first of its three timespecs) in ns; 0 = none given."""
    return _timespecs(data, 3)[0]


def parse_timespec(data: bytes) -> int:
    """One struct timespec (SCM_TIMESTAMPNS) in ns."""
    return _timespecs(data, 1)[0]


def parse_extended_err(data: bytes) -> tuple[int, int, int, int]:
    """(ee_errno, ee_origin, ee_info, ee_data) of a struct sock_extended_err."""
    ee_errno, origin, _type, _code, _pad, info, ee_data = EXTENDED_ERR.unpack_from(data)
    return ee_errno, origin, info, ee_data


def rx_stamp(ancdata: list) -> int:
    """The kernel's receive time of a datagram from its ancillary data, in ns; 0 if it has none."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET:
            if kind == SCM_TIMESTAMPING:
                return parse_scm_timestamping(data)
            if kind == SCM_TIMESTAMPNS:
                return parse_timespec(data)
    return 0


def tx_stamp(ancdata: list) -> tuple[int, int | None]:
    """(software TX stamp in ns, OPT_ID key or None) of one error-queue message; (0, None) if it is not one."""
    stamp, key, is_tx = 0, None, False
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPING:
            stamp = parse_scm_timestamping(data)
        elif (level, kind) in ((SOL_IP, IP_RECVERR), (SOL_IPV6, IPV6_RECVERR)):
            ee_errno, origin, info, key = parse_extended_err(data)
            # anything else is an ICMP error or another kind of stamp, not the send time
            is_tx = ee_errno == errno.ENOMSG and origin == SO_EE_ORIGIN_TIMESTAMPING and info == SCM_TSTAMP_SND
    return (stamp, key) if is_tx else (0, None)


def pick_method(configured: str, tx_rt: list, tx_kernel: list, rx_kernel: list, got: list) -> tuple[str, str]:
    """The best method every received sample supports, and why a better one was dropped ("" if none).

    Kernel stamps and the tx_rt reading are all CLOCK_REALTIME, so a TX stamp must fall between the
    clock read before sendto and the reply's RX stamp; one outside that window belongs to another
    packet (or the clock was stepped), and the run is measured with the next method instead.
    """
    why = ""
    if configured == "kernel":
        if not got:
            if any(tx_kernel):
                return "kernel", ""
            why = "no kernel TX timestamps"
        else:
            missing = sum(1 for k in got if not tx_kernel[k] or not rx_kernel[k])
            outside = sum(1 for k in got if tx_kernel[k] and not tx_rt[k] <= tx_kernel[k] <= rx_kernel[k])
            if not missing and not outside:
                return "kernel", ""
            why = f"kernel TX/RX timestamps missing for {missing}, inconsistent for {outside} of {len(got)} samples"
        configured = "kernel-rx"
    if configured == "kernel-rx":
        bad = sum(1 for k in got if not rx_kernel[k] > tx_rt[k])
        if not bad:
            return "kernel-rx", why
        why = (why + "; " if why else "") + f"kernel RX timestamps missing or early for {bad} of {len(got)} samples"
    return "user", why


# ---------------------------------------------------------------------------------------------------
# Sockets


def resolve(host: str, port: int, passive: bool = False) -> tuple[int, tuple]:
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=flags)
    except socket.gaierror as exc:
        raise AgentError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, sockaddr


def set_buffer(sock: socket.socket, forced: int, plain: int, size: int) -> None:
    """Ask for a `size`-byte buffer: the FORCE variant passes net.core.[rw]mem_max when we are root."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, forced, size)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)  # capped at the sysctl maximum
        except OSError as exc:
            log(f"cannot enlarge socket buffer: {exc}")


def set_rcvtimeo(sock: socket.socket, ns: int) -> None:
    """Bound each blocking receive to `ns`; it then fails with EAGAIN (BlockingIOError)."""
    us = max(1, ns // 1000)  # 0 would mean "wait forever"
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO_OLD, struct.pack("@ll", us // 1_000_000, us % 1_000_000))


def enable_timestamps(sock: socket.socket, want: str) -> tuple[str, int]:
    """Switch on the best stamping `want` allows: ("kernel", flags), ("kernel-rx", 0) or ("user", 0)."""
    if want in ("auto", "kernel"):
        for flags in TIMESTAMPING_FLAGS:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags)
                return "kernel", flags
            except OSError as exc:
                last = exc
        if want == "kernel":
            raise AgentError(f"--timestamping kernel: SO_TIMESTAMPING refused: {last}")
        log(f"SO_TIMESTAMPING refused ({last}); trying SO_TIMESTAMPNS")
    if want in ("auto", "kernel-rx"):
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            return "kernel-rx", 0
        except OSError as exc:
            if want == "kernel-rx":
                raise AgentError(f"--timestamping kernel-rx: SO_TIMESTAMPNS refused: {exc}") from None
            log(f"SO_TIMESTAMPNS refused ({exc}); timing in user space")
    return "user", 0


# ---------------------------------------------------------------------------------------------------
# serve


class _Stop(Exception):
    pass


def _stop(signum, frame):  # noqa: ARG001
    raise _Stop(signal.Signals(signum).name)


def write_atomic(path: str, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    import tempfile  # here: every `ping` is a fresh interpreter and skips the imports it does not use
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".agent-ready-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def serve(args: argparse.Namespace) -> int:
    family, addr = resolve(args.bind, args.port, passive=True)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    # Bursts wait in the receive buffer while the interpreter catches up instead of being dropped.
    set_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, 8 << 20)
    set_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, 4 << 20)
    try:
        sock.bind(addr)
    except OSError as exc:
        raise AgentError(f"cannot bind --bind {args.bind} --port {args.port}: {exc.strerror or exc}") from None
    if args.idle_exit > 0:
        try:  # a kernel receive timeout costs nothing per datagram (settimeout adds a poll to each)
            set_rcvtimeo(sock, int(args.idle_exit * 1e9))
        except OSError:
            sock.settimeout(args.idle_exit)

    bound = sock.getsockname()
    ready = json.dumps({"ready": True, "bind": bound[0], "port": bound[1], "pid": os.getpid()}) + "\n"
    echoed = 0
    buf = bytearray(65536)
    view = memoryview(buf)
    recvfrom_into, sendto = sock.recvfrom_into, sock.sendto
    # Handlers go in before the announcement: a caller may signal as soon as it reads the ready line.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if args.ready_file:
            try:
                write_atomic(args.ready_file, ready)
            except OSError as exc:
                raise AgentError(f"cannot write --ready-file {args.ready_file}: {exc}") from None
        sys.stdout.write(ready)
        sys.stdout.flush()
        while True:
            try:
                n, peer = recvfrom_into(buf)
            except (BlockingIOError, socket.timeout):
                reason = f"idle for {args.idle_exit:g} s"
                break
            try:
                sendto(view[:n], peer)
            except OSError:
                pass  # a reply the kernel would not take is one lost sample, not the end of the server
            echoed += 1
    except _Stop as exc:
        reason = f"stopped by {exc}"
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not interrupt the clean-up
            signal.signal(sig, signal.SIG_IGN)
        sock.close()
        if args.ready_file:
            _remove_if_ours(args.ready_file, ready)
    log(f"serve: {reason}; echoed {echoed} datagrams")
    return 0


def _remove_if_ours(path: str, text: str) -> None:
    # A stale ready file would tell the next caller that a dead server is listening.
    try:
        with open(path) as f:
            if f.read() == text:
                os.unlink(path)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------------
# ping


class Pinger:
    """One request in flight at a time; per-send timestamps kept in lists indexed by sequence number.

    The wait for an echo is a blocking recvmsg bounded by SO_RCVTIMEO, not poll(): the TX stamp is
    queued during sendto, so poll() would return at once with POLLERR, and the client's extra work
    right after the send delays the echo itself (on loopback the server is woken from the client's
    send path and tends to share its CPU). Measured on a 2-core VM: with poll() the kernel RTT median
    on loopback was 24-31 us, with the blocking wait 14 us. A queued TX stamp does not wake a
    blocking recvmsg; the error queue is read after the echo, outside the measured interval.
    """

    def __init__(self, sock: socket.socket, dst: tuple, size: int, total: int, flags: int,
                 timeout_ns: int) -> None:
        self.sock, self.dst, self.size, self.timeout_ns = sock, dst, size, timeout_ns
        self.tx_errqueue = bool(flags & SOF_TIMESTAMPING_TX_SOFTWARE)
        self.use_id = bool(flags & SOF_TIMESTAMPING_OPT_ID)
        self.tx_rt = [0] * total  # CLOCK_REALTIME just before sendto (what kernel stamps compare with)
        self.tx_mono = [0] * total
        self.tx_kernel = [0] * total
        self.rx_kernel = [0] * total
        self.rx_mono = [0] * total
        self.sent_ids: list[int] = []  # OPT_ID key -> sequence: the kernel counts sends that got that far
        self.stale = 0
        self.socket_errors = 0
        self.rcvtimeo_ns = 0
        sock.settimeout(None)  # blocking: Python's own timeout would poll() (see above)
        self.set_rcvtimeo(timeout_ns)
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN)

    def set_rcvtimeo(self, ns: int) -> None:
        set_rcvtimeo(self.sock, ns)
        self.rcvtimeo_ns = ns

    def send(self, seq: int) -> OSError | None:
        if self.rcvtimeo_ns != self.timeout_ns:  # shortened by a stale echo during the last wait
            self.set_rcvtimeo(self.timeout_ns)
        payload = build_payload(seq, self.size)
        self.tx_rt[seq] = time.clock_gettime_ns(time.CLOCK_REALTIME)
        self.tx_mono[seq] = time.monotonic_ns()
        try:
            self.sock.sendto(payload, self.dst)
        except OSError as exc:
            return exc
        self.sent_ids.append(seq)
        return None

    def wait(self, seq: int) -> bool:
        """Block until the echo of `seq` arrives (True) or its timeout passes (False)."""
        deadline = self.tx_mono[seq] + self.timeout_ns
        try:
            while True:
                try:
                    data, anc, flags, peer = self.sock.recvmsg(self.size + 64, ANC_SIZE)
                except BlockingIOError:  # SO_RCVTIMEO ran out
                    return False
                except OSError as exc:  # an error the kernel reported on the socket; keep waiting
                    self.socket_errors += 1
                    if self.socket_errors == 1:
                        log(f"ping: socket error while waiting for echoes: {exc}")
                    data = None
                now = time.monotonic_ns()
                if data is not None and self.is_echo(seq, data, flags, peer):
                    self.rx_mono[seq] = now
                    self.rx_kernel[seq] = rx_stamp(anc)
                    return True
                if data is not None:
                    self.stale += 1  # a late echo of a request given up on, or not ours at all
                left = deadline - now
                if left < 1000:
                    return False
                self.set_rcvtimeo(left)
        finally:
            if self.tx_errqueue:
                self.drain_errqueue()

    def is_echo(self, seq: int, data: bytes, flags: int, peer: tuple) -> bool:
        return (parse_payload(data) == seq and len(data) == self.size and not flags & socket.MSG_TRUNC
                and peer[:2] == self.dst[:2])

    def drain_errqueue(self) -> None:
        """Match queued TX stamps to their sends (recvmsg on the error queue never blocks)."""
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(self.size + 256, ANC_SIZE, MSG_ERRQUEUE)
            except OSError:  # BlockingIOError: the queue is empty
                return
            stamp, key = tx_stamp(anc)
            if not stamp:
                continue
            seq = None
            if self.use_id and key is not None and key < len(self.sent_ids):
                seq = self.sent_ids[key]
            elif not self.use_id:  # the kernel looped the packet back: find our header in it
                at = data.find(MAGIC)
                seq = parse_payload(data[at:]) if at >= 0 else None
            if seq is not None and seq < len(self.tx_kernel) and not self.tx_kernel[seq]:
                self.tx_kernel[seq] = stamp

    def finish_tx(self, seqs: list, timeout_s: float) -> None:
        """Give TX stamps that trail their echoes (unusual paths) a moment to arrive."""
        deadline = time.monotonic() + timeout_s
        while self.tx_errqueue and any(not self.tx_kernel[s] for s in seqs):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for _fd, ev in self.poller.poll(max(1, int(left * 1000))):
                if ev & select.POLLERR:
                    self.drain_errqueue()
                    self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # a pending error would spin
                if ev & select.POLLIN:
                    self.discard_pending()

    def discard_pending(self) -> None:
        while True:
            try:
                self.sock.recv(self.size + 64, socket.MSG_DONTWAIT)
            except OSError:  # BlockingIOError: nothing left
                return
            self.stale += 1


def ping(args: argparse.Namespace) -> dict:
    family, dst = resolve(args.dst, args.port)
    sock = socket.socket(family, socket.SOCK_DGRAM)  # unconnected: ICMP errors don't turn into exceptions
    try:
        set_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, 1 << 20)
        configured, flags = enable_timestamps(sock, args.timestamping)
        total = args.warmup + args.count
        timeout_ns = int(args.timeout * 1e9)
        p = Pinger(sock, dst, args.size, total, flags, timeout_ns)
        send_errors = failures = silent = 0
        interval_ns = int(args.interval * 1e9)
        start = next_send = time.monotonic_ns()
        for seq in range(total):
            delay = next_send - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            if seq == args.warmup:
                start = time.monotonic_ns()
            exc = p.send(seq)
            # warm-up requests go back to back: they only have to resolve the neighbour and warm the
            # path's caches, and pacing them would add warmup x interval to every measurement
            next_send = p.tx_mono[seq] + (interval_ns if seq + 1 >= args.warmup else 0)
            if exc is not None:
                failures += 1
                send_errors += seq >= args.warmup
                if failures == 1:
                    log(f"ping: sendto {args.dst}:{args.port} failed: {exc} (counted as lost)")
                continue
            silent = 0 if p.wait(seq) else silent + 1
            if silent >= args.give_up:
                # the path is down (from the start, or it died mid-run: a node lost its cable), and
                # waiting out every timeout only delays saying so; the requests not sent count as lost
                answered = "the first" if silent == seq + 1 else "the last"
                log(f"ping: no reply to {answered} {silent} requests; giving up (the rest counted as lost)")
                break
        wall_s = (time.monotonic_ns() - start) / 1e9
        recorded = range(args.warmup, total)
        got = [s for s in recorded if p.rx_mono[s]]
        p.finish_tx(got, min(args.timeout, 0.2))
    finally:
        sock.close()

    method, why = pick_method(configured, p.tx_rt, p.tx_kernel, p.rx_kernel, got)
    if why:
        log(f"ping: {why}; timing with {method}")
    if args.timestamping != "auto" and method != args.timestamping:
        raise AgentError(f"--timestamping {args.timestamping} is not available here ({why}); try auto")
    if method == "kernel":
        rtt = [p.rx_kernel[s] - p.tx_kernel[s] for s in got]
    elif method == "kernel-rx":
        rtt = [p.rx_kernel[s] - p.tx_rt[s] for s in got]
    else:
        rtt = [p.rx_mono[s] - p.tx_mono[s] for s in got]
    return {
        "dst": args.dst,
        "port": args.port,
        "size": args.size,
        "count": args.count,
        "sent": args.count,  # attempts, like ping's "transmitted": loss = lost / sent stays right
        "received": len(got),
        "lost": args.count - len(got),
        "stale": p.stale,
        "send_errors": send_errors,
        "timestamping": method,
        "rtt_ns": rtt,
        "wall_s": round(wall_s, 6),
    }


# ---------------------------------------------------------------------------------------------------
# CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # Usage problems still answer in JSON, so a caller parsing stdout learns what went wrong.
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        emit({"error": message})
        sys.exit(2)


def _number(kind, low, high=None, low_open=False):
    """An argparse type: a finite `kind` >= low (> low when low_open) and <= high."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            want = (f"> {low}" if low_open else f">= {low}") + (f" and <= {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {want})")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def cmd_ping(args: argparse.Namespace) -> int:
    emit(ping(args))
    return 0


SESSION_COMMANDS = ("ping",)


def cmd_session(args: argparse.Namespace) -> int:
    """Many requests, one process: each stdin line is a JSON list, the arguments of one `ping`; each answer
    is one stdout line, that ping's JSON ({"error"} for a bad request or a failed ping, and the session
    goes on). A run's rounds of pings over one session pay for no interpreter start and no SSH channel
    per ping. Ends at EOF (the caller closed its channel, or its connection dropped) or after
    --idle-exit seconds without a request: a caller cut off while its connection looks open must not
    leave the session behind."""
    parser = build_parser()
    pending = b""
    while True:
        while b"\n" not in pending:
            ready, _, _ = select.select([0], [], [], args.idle_exit or None)
            if not ready:
                log(f"session: no request for {args.idle_exit:g} s; ending")
                return 0
            chunk = os.read(0, 65536)
            if not chunk:
                return 0
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        if not line.strip():
            continue
        try:
            argv = json.loads(line)
            if not (isinstance(argv, list) and argv and argv[0] in SESSION_COMMANDS):
                raise ValueError(f"a request is a JSON list of arguments starting with one of {SESSION_COMMANDS}")
            request = parser.parse_args([str(a) for a in argv])
        except SystemExit:  # argparse's: _Parser.error has answered with {"error"}
            continue
        except ValueError as exc:
            emit({"error": f"session: {exc}"})
            continue
        try:
            emit(ping(request))
        except AgentError as exc:
            emit({"error": str(exc)})


def send_raw(args: argparse.Namespace) -> int:
    """Send IPv4 packets built elsewhere (netbench crafts trace probes with scapy where it runs) from
    this network namespace, as they are: a raw socket with the header included. Reads a JSON list of
    hex strings on stdin; prints how many went out."""
    try:
        packets = [bytes.fromhex(h) for h in json.load(sys.stdin)]
    except (ValueError, TypeError) as exc:
        raise AgentError(f"send-raw: stdin must be a JSON list of hex packets ({exc})") from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied
    sent, errors = 0, []
    try:
        for i, pkt in enumerate(packets):
            if i:
                time.sleep(args.interval)
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                raise AgentError(f"send-raw: packet {i} is not IPv4")
            try:
                sock.sendto(pkt, (socket.inet_ntoa(pkt[16:20]), 0))
                sent += 1
            except OSError as exc:  # e.g. EMSGSIZE past the MTU with DF set: that is data, not a crash
                errors.append(f"packet {i}: {exc.strerror or exc}")
    finally:
        sock.close()
    emit({"sent": sent, "errors": errors})
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    """Start a run's servers on this node in one go (one SSH round trip instead of one per server and
    per wait). SPEC on stdin: {"servers": [{"name", "argv", "ready": file | null, "check": argv | null}],
    "timeout": s}. Each server runs detached: its own session, output to DIR/<name>.log, pid in
    DIR/<name>.pid, NB_RUN=<DIR's name> in its environment (the node lock finds the run's processes by
    it). Then each `ready` file must appear and each `check` command print something (a listening
    socket), all within the timeout. Prints {"started": {name: pid}} or, at the first server that did
    not come up, {"error", "failed": name, "why", "log": the tail of its log}."""
    import subprocess  # here: every `ping` is a fresh interpreter and skips this import

    try:
        spec = json.load(sys.stdin)
        servers = [(str(s["name"]), [str(a) for a in s["argv"]], s.get("ready"), s.get("check"))
                   for s in spec["servers"]]
        deadline = time.monotonic() + float(spec.get("timeout", 10.0))
    except (ValueError, TypeError, KeyError) as exc:
        raise AgentError(f"start: stdin must be a JSON start spec ({exc!r})") from None
    workdir = os.path.abspath(args.workdir)
    try:  # a directory of ours, as the node lock made it: never a symlink
        st = os.lstat(workdir)
    except OSError:
        st = None
    if st is None or os.path.islink(workdir) or not os.path.isdir(workdir) or st.st_uid != os.getuid():
        raise AgentError(f"start: refusing {workdir}: missing, a symlink or not owned by uid {os.getuid()}")
    env = dict(os.environ, NB_RUN=os.path.basename(workdir))
    procs = {}
    for name, argv, _ready, _check in servers:
        with open(os.path.join(workdir, name + ".log"), "wb") as logf:
            procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                           start_new_session=True, close_fds=True, env=env)
        write_atomic(os.path.join(workdir, name + ".pid"), f"{procs[name].pid}\n")

    def tail(name: str) -> str:
        try:
            with open(os.path.join(workdir, name + ".log"), errors="replace") as f:
                return f.read()[-300:].strip()
        except OSError:
            return ""

    def up(name: str, ready, check) -> bool:
        if ready:
            return os.path.exists(ready) and os.path.getsize(ready) > 0
        out = subprocess.run(check, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False).stdout
        return bool(out.strip())

    for name, _argv, ready, check in [s for s in servers if s[2]] + [s for s in servers if not s[2] and s[3]]:
        while not up(name, ready, check):
            why = "exited" if procs[name].poll() is not None else None
            if why is None and time.monotonic() > deadline:
                why = "timeout"
            if why:
                emit({"error": f"{name} did not start ({why})", "failed": name, "why": why, "log": tail(name)})
                return 1
            time.sleep(0.02)
    emit({"started": {name: p.pid for name, p in procs.items()}})
    return 0


def cmd_version(args: argparse.Namespace) -> int:  # noqa: ARG001
    import platform
    emit({"agent": AGENT, "version": VERSION, "python": platform.python_version()})
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="agent.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", metavar="{serve,ping,session,send-raw,start,version}")
    sub.required = True

    s = sub.add_parser("serve", help="UDP echo server")
    s.add_argument("--bind", required=True, metavar="ADDR")
    s.add_argument("--port", required=True, type=_number(int, 0, 65535), help="0 picks a free port")
    s.add_argument("--idle-exit", type=_number(float, 0), default=0.0, metavar="SECONDS",
                   help="exit after this long without a datagram (0: never)")
    s.add_argument("--ready-file", metavar="PATH", help="also write the ready line here, atomically")
    s.set_defaults(func=serve)

    p = sub.add_parser("ping", help="UDP request/response latency client")
    p.add_argument("--dst", required=True, metavar="ADDR")
    p.add_argument("--port", required=True, type=_number(int, 1, 65535))
    p.add_argument("--count", type=_number(int, 1), default=200, help="recorded requests")
    p.add_argument("--interval", type=_number(float, 0), default=0.01, metavar="SECONDS",
                   help="spacing between sends")
    p.add_argument("--size", type=_number(int, HEADER.size, MAX_PAYLOAD), default=64, metavar="BYTES",
                   help="UDP payload bytes")
    p.add_argument("--timeout", type=_number(float, 0, low_open=True), default=1.0, metavar="SECONDS",
                   help="wait for each echo this long, then count a loss")
    p.add_argument("--warmup", type=_number(int, 0), default=5, help="unrecorded requests sent first")
    p.add_argument("--give-up", type=_number(int, 1), default=10, metavar="N",
                   help="stop after N requests in a row went unanswered (the rest count as lost)")
    p.add_argument("--timestamping", choices=("auto",) + METHODS, default="auto",
                   help="auto: the best this path supports; otherwise that method or an error")
    p.set_defaults(func=cmd_ping)

    q = sub.add_parser("session", help="pings one after another, one per stdin line (see cmd_session)")
    q.add_argument("--idle-exit", type=_number(float, 0), default=30.0, metavar="SECONDS",
                   help="end after this long without a request (0: never)")
    q.set_defaults(func=cmd_session)

    r = sub.add_parser("send-raw", help="send IPv4 packets given as hex on stdin (trace probes)")
    r.add_argument("--interval", type=_number(float, 0), default=0.005, metavar="SECONDS")
    r.set_defaults(func=send_raw)

    t = sub.add_parser("start", help="start the run's servers detached and wait until they are up (spec on stdin)")
    t.add_argument("--workdir", required=True, metavar="DIR")
    t.set_defaults(func=cmd_start)

    v = sub.add_parser("version", help="agent and interpreter versions")
    v.set_defaults(func=cmd_version)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AgentError as exc:
        msg = str(exc)
        code = 1
    except KeyboardInterrupt:
        msg, code = "interrupted", 130
    log(f"{args.command}: error: {msg}")
    emit({"error": msg})
    return code


if __name__ == "__main__":
    sys.exit(main())
