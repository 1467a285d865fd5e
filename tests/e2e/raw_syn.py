#!/usr/bin/env python3
"""The raw-packet bypass of the egress lock-down, for tests/e2e/pod-sim.sh.

netfilter's OUTPUT chain (where the lock-down's owner match lives) never sees
a frame written to an AF_PACKET socket: with CAP_NET_RAW a process can open a
TCP connection to any SMTP port by writing the segments itself. This client
does the first step, which is enough to show the hole: it writes an Ethernet
frame holding a TCP SYN to DST:PORT and waits for the SYN-ACK.

    raw_syn.py --iface IF --src-ip A --dst-ip B --dst-mac MAC --port P [--timeout S]

Prints one JSON line: {"ok": true, "synack": true} when the peer answered,
{"ok": false, "error": "PermissionError: ..."} when the socket could not be
opened (no CAP_NET_RAW), {"ok": false, "error": "timeout"} otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800


def out(**fields: object) -> int:
    print(json.dumps(fields, sort_keys=True), flush=True)
    return 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_frame(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), os.getpid() & 0xFFFF, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + tcp


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--src-ip", required=True)
    p.add_argument("--dst-ip", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args(argv)
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    except OSError as exc:
        return out(ok=False, error=f"{type(exc).__name__}: {exc}")
    with s:
        s.bind((args.iface, ETH_P_IP))
        src_mac = s.getsockname()[4]
        dst_mac = bytes.fromhex(args.dst_mac.replace(":", ""))
        src, dst = socket.inet_aton(args.src_ip), socket.inet_aton(args.dst_ip)
        sport = 40000 + os.getpid() % 20000
        seq = int.from_bytes(os.urandom(4), "big")
        s.send(syn_frame(src_mac, dst_mac, src, dst, sport, args.port, seq))
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                frame = s.recv(65535)
            except (socket.timeout, TimeoutError):
                break
            ip = frame[14:]
            if len(ip) < 40 or ip[9] != socket.IPPROTO_TCP or ip[12:16] != dst or ip[16:20] != src:
                continue
            ihl = (ip[0] & 0x0F) * 4
            tsport, tdport, _, ack = struct.unpack("!HHII", ip[ihl:ihl + 12])
            flags = ip[ihl + 13]
            if tsport == args.port and tdport == sport and flags & 0x12 == 0x12 and ack == (seq + 1) % 2**32:
                return out(ok=True, synack=True)
        return out(ok=False, error="timeout")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
