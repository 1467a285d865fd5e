#!/usr/bin/env python3
"""A legacy mailer in one file: what tests/e2e/pod-sim.sh and tests/kind/run.sh
run inside a tenant pod (stdlib only, so any python3 image or the host's
/usr/bin/python3 will do; kind pipes it to `python3 -` over stdin).

    smtp_probe.py send --host H --port P [--user U --password P] --mail-from F --rcpt-to T [--subject S]
                       [--tls none|starttls|implicit --cafile CA]   (TLS verified against CA, SNI = H)
    smtp_probe.py connect --host H --port P

Prints one JSON line and exits 0 whenever it got an answer it can describe:
  send:    {"stage": "connect|ehlo|auth|mail|rcpt|data", "code": 250, "reply": "...", "ok": true}
           (ok only when DATA was accepted with 2xx; stage names where it stopped)
  connect: {"ok": true, "banner": "220 ..."} or {"ok": false, "error": "refused|timeout|..."}
Exits 2 on a usage error.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import smtplib
import socket
import ssl
import sys
import uuid


def out(**fields: object) -> int:
    print(json.dumps(fields, sort_keys=True), flush=True)
    return 0


def reply_text(msg: bytes | str) -> str:
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def do_connect(args: argparse.Namespace) -> int:
    try:
        sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    except ConnectionRefusedError:
        return out(ok=False, error="refused")
    except (socket.timeout, TimeoutError):
        return out(ok=False, error="timeout")
    except OSError as exc:
        return out(ok=False, error=f"{type(exc).__name__}: {exc}")
    try:
        sock.settimeout(args.timeout)
        banner = b""
        while not banner.endswith(b"\n") and len(banner) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            banner += chunk
    except ConnectionResetError:
        return out(ok=False, error="reset")
    except (socket.timeout, TimeoutError):
        return out(ok=False, error="banner timeout")
    finally:
        sock.close()
    text = banner.decode("utf-8", "replace").strip()
    return out(ok=text.startswith("220"), banner=text)


def do_send(args: argparse.Namespace) -> int:
    ctx = ssl.create_default_context(cafile=args.cafile) if args.tls != "none" else None
    try:
        if args.tls == "implicit":
            smtp = smtplib.SMTP_SSL(args.host, args.port, local_hostname="legacy-mailer",
                                    timeout=args.timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(args.host, args.port, local_hostname="legacy-mailer", timeout=args.timeout)
    except ConnectionRefusedError:
        return out(ok=False, stage="connect", code=0, reply="refused")
    except smtplib.SMTPConnectError as exc:  # a greeting other than 220, e.g. 421
        return out(ok=False, stage="connect", code=exc.smtp_code, reply=reply_text(exc.smtp_error))
    except (OSError, smtplib.SMTPException) as exc:
        return out(ok=False, stage="connect", code=0, reply=f"{type(exc).__name__}: {exc}")
    try:
        code, msg = smtp.ehlo()
        if code != 250:
            return out(ok=False, stage="ehlo", code=code, reply=reply_text(msg))
        if args.tls == "starttls":
            try:
                code, msg = smtp.starttls(context=ctx)
            except smtplib.SMTPNotSupportedError as exc:
                return out(ok=False, stage="starttls", code=0, reply=f"STARTTLS not offered: {exc}")
            code, msg = smtp.ehlo()
            if code != 250:
                return out(ok=False, stage="ehlo", code=code, reply=reply_text(msg))
        if args.user is not None:
            try:
                code, msg = smtp.login(args.user, args.password or "")
            except smtplib.SMTPAuthenticationError as exc:
                return out(ok=False, stage="auth", code=exc.smtp_code, reply=reply_text(exc.smtp_error))
            except smtplib.SMTPNotSupportedError as exc:
                return out(ok=False, stage="auth", code=0, reply=f"AUTH not offered: {exc}")
        code, msg = smtp.mail(args.mail_from)
        if code != 250:
            return out(ok=False, stage="mail", code=code, reply=reply_text(msg))
        code, msg = smtp.rcpt(args.rcpt_to)
        if code not in (250, 251):
            return out(ok=False, stage="rcpt", code=code, reply=reply_text(msg))
        body = (
            f"From: {args.mail_from}\r\n"
            f"To: {args.rcpt_to}\r\n"
            f"Subject: {args.subject}\r\n"
            f"Date: {email.utils.formatdate()}\r\n"
            f"Message-ID: <{uuid.uuid4()}@legacy-mailer>\r\n"
            "\r\n"
            "Sent by the smtpbind test mailer.\r\n"
        )
        code, msg = smtp.data(body.encode())
        tls = smtp.sock.version() if isinstance(smtp.sock, ssl.SSLSocket) else None
        return out(ok=200 <= code < 300, stage="data", code=code, reply=reply_text(msg), tls=tls)
    except smtplib.SMTPServerDisconnected as exc:
        return out(ok=False, stage="disconnected", code=0, reply=str(exc))
    except (OSError, smtplib.SMTPException) as exc:
        return out(ok=False, stage="error", code=0, reply=f"{type(exc).__name__}: {exc}")
    finally:
        try:
            smtp.quit()
        except Exception:  # noqa: BLE001 - the session may already be gone
            smtp.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("send", "connect"):
        p = sub.add_parser(name)
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--timeout", type=float, default=15.0)
        if name == "send":
            p.add_argument("--user")
            p.add_argument("--password")
            p.add_argument("--mail-from", required=True)
            p.add_argument("--rcpt-to", required=True)
            p.add_argument("--subject", default="smtpbind test")
            p.add_argument("--tls", choices=("none", "starttls", "implicit"), default="none")
            p.add_argument("--cafile")
    args = parser.parse_args(argv)
    return do_send(args) if args.cmd == "send" else do_connect(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
