#!/usr/bin/env python3
"""Sends a corpus of hostile MAIL FROM / RCPT TO paths through smtpbind.

Usage: hostile_paths.py HOST:PORT   (the mounted password in $SMTPBIND_PASSWORD)

One transaction per case on one authenticated session, written byte-exact on
a raw socket (no client library re-quotes anything). Prints one JSON line per
case: the case name, what the test expects, the replies, and the queue id the
upstream gave when the message was accepted. The expected mailboxes are
written here by hand in Postfix's external (RFC 5321) form, independently of
smtpbind's own parser.
"""
import base64
import json
import os
import re
import socket
import sys

# (name, MAIL argument, RCPT argument, expected outcome, from=, to=)
# outcome: "relay" (Postfix logs exactly from=/to=) or the reply prefix.
CASES = [
    ("dsn-in-quotes", b"<app@acme.example>",
     b'<"x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z"@example.net>', "relay",
     "app@acme.example", '"x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z"@example.net'),
    ("auth-in-quotes", b'<"a> AUTH=victim+40globex.example ENVID=x"@acme.example>',
     b"<customer@example.net>", "relay",
     '"a> AUTH=victim+40globex.example ENVID=x"@acme.example', "customer@example.net"),
    ("auth-parameter", b"<app@acme.example> AUTH=<victim@globex.example>",
     b"<customer@example.net>", "relay", "app@acme.example", "customer@example.net"),
    ("space-in-quotes", b"<app@acme.example>", b'<"john doe"@example.net>', "relay",
     "app@acme.example", '"john doe"@example.net'),
    ("at-in-quotes", b"<app@acme.example>", b'<"a@b"@example.net>', "relay",
     "app@acme.example", '"a@b"@example.net'),
    ("backslash-and-quote", b"<app@acme.example>", b'<"a\\\\b\\"c"@example.net>', "relay",
     "app@acme.example", '"a\\\\b\\"c"@example.net'),
    ("quoted-dot-string", b'<"app"@acme.example>', b'<"customer"@example.net>', "relay",
     "app@acme.example", "customer@example.net"),
    ("source-route", b"<app@acme.example>", b"<@evil.example,@relay.example:customer@example.net>",
     "relay", "app@acme.example", "customer@example.net"),
    ("nul-in-quotes", b'<"a\x00b"@acme.example>', b"<customer@example.net>", "501 5.1.3", None, None),
    ("tab-in-quotes", b"<app@acme.example>", b'<"a\tb"@example.net>', "501 5.1.3", None, None),
    ("cr-in-quotes", b"<app@acme.example>", b'<"a\rRSET"@example.net>', "501 5.1.3", None, None),
    ("eight-bit", b"<app@acme.example>", "<jos\u00e9@example.net>".encode(), "553 5.6.7", None, None),
    ("eight-bit-sender", "<jos\u00e9@acme.example>".encode(), b"<customer@example.net>", "553 5.6.7",
     None, None),
    ("dsn-parameter", b"<app@acme.example>", b"<customer@example.net> NOTIFY=NEVER", "555 5.5.4",
     None, None),
    ("envid-parameter", b"<app@acme.example> ENVID=x", b"<customer@example.net>", "555 5.5.4",
     None, None),
    ("evil-domain-quoted", b"<app@acme.example>", b'<"customer@example.net"@evil.example>',
     "550 5.7.1", None, None),
    ("bracket-in-local", b"<app@acme.example>", b"<x>@example.net>", "553", None, None),
]


class Client:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return "".join(lines) or "(closed)"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace") + "\n"
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "".join(lines)

    def cmd(self, raw: bytes):
        self.sock.sendall(raw + b"\r\n")
        return self.reply()


def main():
    addr = sys.argv[1]
    password = os.environ["SMTPBIND_PASSWORD"]
    c = Client(addr)
    assert c.reply().startswith("220")
    assert c.cmd(b"EHLO hostile.test").startswith("250")
    token = base64.b64encode(b"\0apikey\0" + password.encode()).decode()
    auth = c.cmd(b"AUTH PLAIN " + token.encode())
    assert auth.startswith("235"), "AUTH refused"
    for name, mail, rcpt, outcome, exp_from, exp_to in CASES:
        result = {"case": name, "expect": outcome, "from": exp_from, "to": exp_to}
        replies = [c.cmd(b"MAIL FROM:" + mail)]
        if replies[-1].startswith("250"):
            replies.append(c.cmd(b"RCPT TO:" + rcpt))
            if replies[-1].startswith("250"):
                replies.append(c.cmd(b"DATA"))
                if replies[-1].startswith("354"):
                    body = (f"From: app@acme.example\r\nSubject: hostile {name}\r\n\r\n"
                            f"case {name}\r\n.").encode()
                    replies.append(c.cmd(body))
        last = replies[-1].strip().splitlines()[-1] if replies[-1].strip() else ""
        result["reply"] = last
        m = re.search(r"queued as ([0-9A-Za-z]+)", last)
        result["queue_id"] = m.group(1) if m else None
        if not last.startswith("250 2.0.0"):
            c.cmd(b"RSET")
        print(json.dumps(result), flush=True)
    c.cmd(b"QUIT")


if __name__ == "__main__":
    main()
