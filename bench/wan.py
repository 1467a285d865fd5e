#!/usr/bin/env python3
"""WAN benchmark helpers for bench/wan.sh (see bench/README.md).

  wan.py link --listen HOST:PORT --to HOST:PORT [--delay-ms 20]
      A link emulator: a TCP byte relay that delays every chunk, in each
      direction, by a fixed one-way delay (no bandwidth limit, no loss).
      The TCP handshake is emulated too: the relay connects to the far end
      only 3 one-way delays after it accepted, so the first byte the server
      sends (the 220 greeting) reaches the client 2 RTT after connect(), as
      over a real link (SYN, SYN-ACK, ACK + greeting).

  wan.py measure --paths JSON [--rounds 5] [--seq 20] [--conc 8] [--per-client 5] [--pipelining]
      The legacy client: one message per session, no client pipelining:
      connect, 220, EHLO, [STARTTLS, EHLO, AUTH when the path says so, or AUTH
      on loopback], MAIL, RCPT, DATA, the message, QUIT. Measures connect -> the
      250 after the message, sequentially and with CONC concurrent clients,
      for every path in interleaved rounds (the order rotates each round).
      For paths with "delivery_log", it also reads the upstream's activity log
      (the capture's --log-dir JSON lines) for when the upstream had each
      message, matched by a unique recipient.
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import ssl
import statistics
import sys
import time
from datetime import datetime


# --------------------------------------------------------------------------- link

async def _pump(reader, writer, delay):
    """Copy reader -> writer, each chunk written `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()

    async def rd():
        try:
            while True:
                data = await reader.read(65536)
                q.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            q.put_nowait((loop.time() + delay, b""))

    async def wr():
        try:
            while True:
                due, data = await q.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(rd(), wr())


def _nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def link_main(listen, to, delay):
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = to.rsplit(":", 1)

    async def handle(creader, cwriter):
        _nodelay(cwriter)
        # the emulated TCP handshake: the server sees the connection 1.5 RTT
        # after connect() (SYN 0.5, SYN-ACK 0.5, ACK 0.5)
        await asyncio.sleep(3 * delay)
        try:
            ureader, uwriter = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cwriter.close()
            return
        _nodelay(uwriter)
        try:
            await asyncio.gather(_pump(creader, uwriter, delay), _pump(ureader, cwriter, delay))
        finally:
            for w in (cwriter, uwriter):
                try:
                    w.close()
                except Exception:
                    pass

    server = await asyncio.start_server(handle, lhost, int(lport), backlog=1024)
    print("link ready", flush=True)
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------------------- client

class SmtpError(Exception):
    pass


async def _reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed; got %r" % lines)
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return int(lines[-1][:3]), lines


async def _cmd(reader, writer, line, expect):
    writer.write(line.encode() + b"\r\n")
    code, lines = await _reply(reader)
    if code != expect:
        raise SmtpError("%s -> %s" % (line.split()[0], lines))
    return lines


def _message(rcpt, size):
    body_line = ("x" * 70 + "\r\n").encode()
    head = (
        "From: app@acme.example\r\nTo: <%s>\r\nSubject: wan bench\r\n"
        "Message-ID: <%s.%d@acme.example>\r\n"
        "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\n" % (rcpt, rcpt.split("@")[0], os.getpid())
    ).encode()
    n = max(1, (size - len(head)) // len(body_line))
    return head + body_line * n + b".\r\n"


PIPELINING = False  # --pipelining: the client pipelines MAIL, RCPT and DATA (RFC 2920)


async def session(path, rcpt, size, tls_ctx, steps=None):
    """One legacy session; returns (seconds connect->250 after data, wall time at connect).
    With `steps` (a list), appends (step, seconds since connect) after each step."""
    wall = time.time()
    t0 = time.perf_counter()
    mark = (lambda name: steps.append((name, time.perf_counter() - t0))) if steps is not None else (lambda name: None)
    reader, writer = await asyncio.open_connection(path["host"], path["port"])
    _nodelay(writer)
    mark("connect")
    try:
        code, lines = await _reply(reader)
        if code != 220:
            raise SmtpError("greeting %s" % lines)
        mark("220")
        await _cmd(reader, writer, "EHLO legacy.acme.example", 250)
        mark("EHLO")
        if path.get("starttls"):
            await _cmd(reader, writer, "STARTTLS", 220)
            mark("STARTTLS")
            await writer.start_tls(path.get("_ctx") or tls_ctx, server_hostname=path.get("server_name", "localhost"))
            mark("TLS handshake")
            await _cmd(reader, writer, "EHLO legacy.acme.example", 250)
            mark("EHLO")
        if path.get("auth"):
            user, pw = path["auth"]
            tok = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
            await _cmd(reader, writer, "AUTH PLAIN " + tok, 235)
            mark("AUTH")
        if PIPELINING:
            # A pipelining mailer (nodemailer, Postfix's smtp client): the
            # envelope and DATA in one write, then their three replies.
            writer.write(("MAIL FROM:<app@acme.example>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt).encode())
            for want in (250, 250, 354):
                code, lines = await _reply(reader)
                if code != want:
                    raise SmtpError("pipelined envelope -> %s" % lines)
            mark("MAIL+RCPT+DATA")
        else:
            await _cmd(reader, writer, "MAIL FROM:<app@acme.example>", 250)
            mark("MAIL")
            await _cmd(reader, writer, "RCPT TO:<%s>" % rcpt, 250)
            mark("RCPT")
            await _cmd(reader, writer, "DATA", 354)
            mark("DATA")
        writer.write(_message(rcpt, size))
        code, lines = await _reply(reader)
        if code != 250:
            raise SmtpError("end of data -> %s" % lines)
        t1 = time.perf_counter()
        mark("end of data")
        writer.write(b"QUIT\r\n")
        try:
            await asyncio.wait_for(_reply(reader), 5)
        except (asyncio.TimeoutError, SmtpError, ConnectionError):
            pass
        return t1 - t0, wall
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:
            pass


def _with_contexts(paths):
    """A path with its own "ca" (smtpbind's client.tls pair) gets its own TLS context."""
    for p in paths:
        if p.get("ca"):
            p["_ctx"] = ssl.create_default_context(cafile=p["ca"])
    return paths


def _pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _read_delivery(logfile):
    """rcpt -> wall time the upstream recorded the message (capture's activity log)."""
    out = {}
    try:
        with open(logfile) as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ts = datetime.fromisoformat(ev["ts"].replace("Z", "+00:00")).timestamp()
                for r in ev.get("rcpt_to", []):
                    out[r] = ts
    except FileNotFoundError:
        pass
    return out


async def measure_main(a):
    paths = _with_contexts(json.loads(a.paths))
    tls_ctx = ssl.create_default_context(cafile=a.ca) if a.ca else None
    # samples[path][phase] = list of (round, seconds, wall, rcpt)
    samples = {p["name"]: {"seq": [], "conc": [], "warm": [], "stagger": []} for p in paths}
    seqno = 0

    def rcpt_for(name, rnd, phase):
        nonlocal seqno
        seqno += 1
        return "r%d-%s-%s-%d@dest.example" % (rnd, name, phase, seqno)

    async def run(p, rnd, phase, count=1):
        out = []
        for _ in range(count):
            r = rcpt_for(p["name"], rnd, phase)
            secs, wall = await session(p, r, a.size, tls_ctx)
            out.append((rnd, secs, wall, r))
        return out

    t_start = time.time()
    for rnd in range(1, a.rounds + 1):
        order = paths[rnd % len(paths):] + paths[:rnd % len(paths)]
        for p in order:
            name = p["name"]
            # a burst of CONC sessions first: it fills smtpbind's pool to CONC
            # (recorded as "warm": the pool may have expired since last round;
            # with --cold-wait longer than the sidecars' idle timeout, it has)
            if a.cold_wait:
                await asyncio.sleep(a.cold_wait)
            for res in await asyncio.gather(*[run(p, rnd, "warm") for _ in range(a.conc)]):
                samples[name]["warm"] += res
            if a.burst_stagger_ms:
                # a burst whose sessions start one after another, STAGGER ms
                # apart (a mailer ramping up), again after the pool expired
                await asyncio.sleep(a.cold_wait)

                async def later(i):
                    await asyncio.sleep(i * a.burst_stagger_ms / 1000.0)
                    return await run(p, rnd, "stagger")
                for res in await asyncio.gather(*[later(i) for i in range(a.conc)]):
                    samples[name]["stagger"] += res
            samples[name]["seq"] += await run(p, rnd, "seq", a.seq)
            for res in await asyncio.gather(*[run(p, rnd, "conc", a.per_client) for _ in range(a.conc)]):
                samples[name]["conc"] += res
        print("round %d done (%.0f s)" % (rnd, time.time() - t_start), file=sys.stderr, flush=True)

    # delivery times (paths whose 250 is not the upstream's: a queueing relay)
    await asyncio.sleep(a.settle)
    delivery = {}
    for p in paths:
        if p.get("delivery_log"):
            d = _read_delivery(p["delivery_log"])
            for phase in ("seq", "conc"):
                dl = []
                missing = 0
                for rnd, _secs, wall, r in samples[p["name"]][phase]:
                    if r in d:
                        dl.append((rnd, d[r] - wall, wall, r))
                    else:
                        missing += 1
                delivery[(p["name"], phase)] = (dl, missing)

    base = paths[0]["name"]

    def stats(rows, rounds):
        allv = [s for _, s, _, _ in rows]
        per = {r: [s for rr, s, _, _ in rows if rr == r] for r in rounds}
        return allv, per

    rounds = list(range(1, a.rounds + 1))
    result = {"rtt_ms": a.rtt_ms, "rounds": a.rounds, "rows": []}
    for phase, label in (("seq", "sequential, 1 client"), ("conc", "%d concurrent clients" % a.conc)):
        ball, bper = stats(samples[base][phase], rounds)
        bp50, bp99 = _pct(ball, 50), _pct(ball, 99)
        print()
        print("== %s (%d sessions per path per round, %d rounds), connect -> 250 after DATA"
              % (label, len(samples[base][phase]) // a.rounds, a.rounds))
        print("%-22s %9s %9s %7s %15s %7s %15s %7s" %
              ("path", "p50 ms", "p99 ms", "p50/dir", "p50 rounds", "p99/dir", "p99 rounds", "RTTs"))

        def line(name, allv, per):
            p50, p99 = _pct(allv, 50), _pct(allv, 99)
            r50 = [_pct(per[r], 50) / _pct(bper[r], 50) for r in rounds if per[r] and bper[r]]
            r99 = [_pct(per[r], 99) / _pct(bper[r], 99) for r in rounds if per[r] and bper[r]]
            rng = lambda xs: "%.2f-%.2f" % (min(xs), max(xs)) if xs else "-"
            rtts = p50 * 1000 / a.rtt_ms if a.rtt_ms else float("nan")
            print("%-22s %9.1f %9.1f %6.2fx %15s %6.2fx %15s %7.1f" %
                  (name, p50 * 1000, p99 * 1000, p50 / bp50, rng(r50), p99 / bp99, rng(r99), rtts))
            result["rows"].append({"phase": phase, "path": name, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000,
                                   "p50_ratio": p50 / bp50, "p99_ratio": p99 / bp99,
                                   "p50_ratio_rounds": r50, "p99_ratio_rounds": r99, "n": len(allv)})

        for p in paths:
            allv, per = stats(samples[p["name"]][phase], rounds)
            line(p["name"], allv, per)
            if (p["name"], phase) in delivery:
                dl, missing = delivery[(p["name"], phase)]
                dall, dper = stats(dl, rounds)
                if dall:
                    line(p["name"] + " (upstream has it)", dall, dper)
                if missing:
                    print("  %s: %d messages not (yet) in the upstream's log" % (p["name"], missing))
    print()
    def burst_table(phase, title):
        print()
        print(title)
        for label, first in (("all rounds", 1), ("rounds >= 2", 2)):
            if first == 2 and (not a.cold_wait or a.rounds < 2):
                continue
            print("-- %s" % label)
            ball = [s for rnd, s, _, _ in samples[base][phase] if rnd >= first]
            for p in paths:
                allv = [s for rnd, s, _, _ in samples[p["name"]][phase] if rnd >= first]
                per = []
                for r in range(first, a.rounds + 1):
                    mine = [s for rnd, s, _, _ in samples[p["name"]][phase] if rnd == r]
                    theirs = [s for rnd, s, _, _ in samples[base][phase] if rnd == r]
                    if mine and theirs:
                        per.append(_pct(mine, 50) / _pct(theirs, 50))
                print("%-22s p50 %7.1f ms (%.2fx direct's; rounds %s)  p99 %7.1f ms (%.2fx)" %
                      (p["name"], _pct(allv, 50) * 1000, _pct(allv, 50) / _pct(ball, 50),
                       "%.2f-%.2f" % (min(per), max(per)) if per else "-",
                       _pct(allv, 99) * 1000, _pct(allv, 99) / _pct(ball, 99)))
                result["rows"].append({"phase": phase + " " + label, "path": p["name"],
                                       "p50_ms": _pct(allv, 50) * 1000, "p99_ms": _pct(allv, 99) * 1000,
                                       "p50_ratio": _pct(allv, 50) / _pct(ball, 50),
                                       "p99_ratio": _pct(allv, 99) / _pct(ball, 99), "p50_ratio_rounds": per})

    if a.cold_wait:
        burst_table("warm", "== first burst of each round (%d sessions at once after %.1f s without traffic: the pool "
                    "expired; round 1 has no earlier concurrency, so rounds >= 2 are shown apart)" % (a.conc, a.cold_wait))
    else:
        burst_table("warm", "== first burst of each round (%d concurrent sessions; the pool may have expired since the last round)" % a.conc)
    if a.burst_stagger_ms:
        burst_table("stagger", "== staggered burst (%d sessions started %.0f ms apart, after %.1f s without traffic)"
                    % (a.conc, a.burst_stagger_ms, a.cold_wait))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(result, f, indent=1)


async def trace_main(a):
    """Per-step timing of a few sessions per path: where the round trips go."""
    paths = _with_contexts(json.loads(a.paths))
    tls_ctx = ssl.create_default_context(cafile=a.ca) if a.ca else None
    print()
    print("== per-step timing, median of %d sequential sessions per path (ms since connect; in RTTs of %g ms)" % (a.n, a.rtt_ms))
    for p in paths:
        runs = []
        for i in range(a.n + 1):
            st = []
            await session(p, "trace-%s-%d@dest.example" % (p["name"], i), a.size, tls_ctx, st)
            if i:  # the first fills the pool / warms caches
                runs.append(st)
        names = [n for n, _ in runs[0]]
        med = [statistics.median(r[k][1] for r in runs) for k in range(len(names))]
        prev = 0.0
        parts = []
        for n, t in zip(names, med):
            parts.append("%s +%.0f" % (n, (t - prev) * 1000))
            prev = t
        print("%-20s %6.0f ms = %4.1f RTT: %s" % (p["name"], med[-1] * 1000, med[-1] * 1000 / a.rtt_ms, ", ".join(parts)))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("link")
    l.add_argument("--listen", required=True)
    l.add_argument("--to", required=True)
    l.add_argument("--delay-ms", type=float, default=20.0)
    m = sub.add_parser("measure")
    m.add_argument("--paths", required=True, help="JSON list; the first is the baseline")
    m.add_argument("--ca")
    m.add_argument("--rounds", type=int, default=5)
    m.add_argument("--seq", type=int, default=20)
    m.add_argument("--conc", type=int, default=8)
    m.add_argument("--per-client", type=int, default=5)
    m.add_argument("--size", type=int, default=1024)
    m.add_argument("--rtt-ms", type=float, default=40.0)
    m.add_argument("--settle", type=float, default=5.0)
    m.add_argument("--cold-wait", type=float, default=0.0,
                   help="seconds without traffic before each path's first burst (> the sidecars' idle timeout: a cold burst)")
    m.add_argument("--burst-stagger-ms", type=float, default=0.0,
                   help="also a burst whose sessions start this far apart, after another --cold-wait")
    m.add_argument("--json-out")
    t = sub.add_parser("trace")
    t.add_argument("--paths", required=True)
    t.add_argument("--ca")
    t.add_argument("--n", type=int, default=5)
    t.add_argument("--size", type=int, default=1024)
    t.add_argument("--rtt-ms", type=float, default=40.0)
    for sp in (m, t):
        sp.add_argument("--pipelining", action="store_true",
                        help="the client pipelines MAIL, RCPT and DATA in one write")
    a = ap.parse_args()
    global PIPELINING
    PIPELINING = bool(getattr(a, "pipelining", False))
    if a.cmd == "trace":
        asyncio.run(trace_main(a))
    elif a.cmd == "link":
        asyncio.run(link_main(a.listen, a.to, a.delay_ms / 1000.0))
    else:
        asyncio.run(measure_main(a))


if __name__ == "__main__":
    main()
