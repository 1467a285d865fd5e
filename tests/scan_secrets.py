#!/usr/bin/env python3
"""Searches everything a test run printed for every test secret, raw and
base64-encoded (alone and inside SASL PLAIN payloads).

Usage: tests/scan_secrets.py FILE_OR_DIR...  (exit 1 on any hit)
The secrets are read from the test sources, so a new one is covered too,
and from target/tmp/test-secrets/ (one per line): what the tests make at run
time — OAuth tokens and their XOAUTH2 payloads, jwt_bearer assertions, the
generated service account key (tests/support/idp.rs writes them).
Every secret is also searched inside any base64 text, at each alignment
(an upstream may echo a payload built around it: issue 19)."""
import base64, os, re, sys

ROOT = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["support/mod.rs", "support/idp.rs", "operations.rs", "identities.rs"]
DYNAMIC = os.path.join(ROOT, "..", "target", "tmp", "test-secrets")


def secrets():
    found = set()
    for rel in SOURCES:
        text = open(os.path.join(ROOT, rel)).read()
        found.update(re.findall(r'const (?:KEY_[A-Z]|APP_PASSWORD): &str = "([^"]+)"', text))
    return sorted(found)


def dynamic_secrets():
    found = set()
    if os.path.isdir(DYNAMIC):
        for name in os.listdir(DYNAMIC):
            with open(os.path.join(DYNAMIC, name)) as f:
                found.update(line for line in f.read().split("\n") if len(line) >= 16)
    return sorted(found)


def aligned(b):
    """The secret inside any base64 text, at each of the three alignments:
    the characters that encode only the secret's bytes (padded or not, in a
    SASL PLAIN or XOAUTH2 payload whatever the user, or echoed by a server)."""
    out = set()
    for lead in range(3):
        enc = base64.b64encode(b"\0" * lead + b).rstrip(b"=")
        core = enc[4:-4] if lead else enc
        if len(core) >= 12:
            out.add(core)
    return out


def forms(secret, run_time=False):
    b = secret.encode()
    out = {b, base64.b64encode(b)} | aligned(b)
    if run_time:
        # Tokens come with their XOAUTH2 payload listed (matched padded and
        # unpadded); keys and assertions are never inside a SASL PLAIN payload.
        return out
    for user in (b"apikey", b"app"):
        out.add(base64.b64encode(b"\0" + user + b"\0" + b))
        out.add(base64.b64encode(user + b"\0" + user + b"\0" + b))
    return out


def files(paths):
    for p in paths:
        if os.path.isdir(p):
            for d, _, names in os.walk(p):
                for n in names:
                    yield os.path.join(d, n)
        elif os.path.exists(p):
            yield p


def main():
    keys = secrets()
    if len(keys) < 3:
        sys.exit(f"scan_secrets: expected at least 3 test secrets in the sources, found {len(keys)}")
    run_time = dynamic_secrets()
    patterns = sorted({f for k in keys for f in forms(k)} | {f for k in run_time for f in forms(k, True)})
    names = {f: k for k in keys for f in forms(k)} | {f: k for k in run_time for f in forms(k, True)}
    keys += run_time
    hits, scanned, size = [], 0, 0
    for path in files(sys.argv[1:]):
        data = open(path, "rb").read()
        scanned += 1
        size += len(data)
        for f in patterns:
            if f in data:
                hits.append((path, names[f][:6] + "…"))
    print(f"scan_secrets: {scanned} files, {size} bytes, {len(keys)} secrets "
          f"({len(run_time)} made at run time) x raw/base64 forms")
    for path, k in hits:
        print(f"  LEAK: {k} in {path}")
    print(f"{0 if hits else 1} passed, {1 if hits else 0} failed")
    sys.exit(1 if hits else 0)


if __name__ == "__main__":
    main()
