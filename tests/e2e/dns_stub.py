"""A one-name DNS server for tests/e2e/static-build.sh.

    dns_stub.py ADDR NAME IPV4 LOG

Answers A queries for NAME with IPV4 (TTL 60), AAAA queries for NAME with no
answer, anything else with NXDOMAIN; appends "<name> <qtype>" to LOG for every
query, so the test can tell that a lookup really went through DNS.
"""
import socket
import struct
import sys

addr, name, ipv4, log = sys.argv[1:5]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((addr, 53))
print("listening", flush=True)
while True:
    query, peer = sock.recvfrom(512)
    if len(query) < 17:
        continue
    tid = struct.unpack(">H", query[:2])[0]
    i, labels = 12, []
    while i < len(query) and query[i]:
        labels.append(query[i + 1:i + 1 + query[i]].decode("ascii", "replace"))
        i += 1 + query[i]
    qtype = struct.unpack(">H", query[i + 1:i + 3])[0]
    question = query[12:i + 5]
    asked = ".".join(labels).lower()
    with open(log, "a") as f:
        f.write(f"{asked} {qtype}\n")
    known = asked == name.lower()
    answer = b""
    if known and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ipv4)
    flags = 0x8180 | (0 if known else 3)  # response, RD, RA; NXDOMAIN for other names
    header = struct.pack(">HHHHHH", tid, flags, 1, 1 if answer else 0, 0, 0)
    sock.sendto(header + question + answer, peer)
