#!/usr/bin/env python3
"""Writes a synthetic reconcile workload for bench/reconcile.sh.

    reconcile_gen.py PROVIDER N DIR [EVENTS]

DIR/audit.jsonl: N audit lines (sidecar message events, relayed, two
accounts' pins, the shape smtpbind writes); DIR/events.<ext>: EVENTS
provider events (default N) of account `a` in PROVIDER's export shape —
SendGrid Event Webhook arrays of 500 events, SES Send records one per line,
or a Get-MessageTrace CSV. Event i names audit message i (account a's
messages are the even ones); every 1000th event names a message no sidecar
audited (unbound).
"""
import sys

provider, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
events = int(sys.argv[4]) if len(sys.argv) > 4 else n
PIN_A, PIN_B = "0f1e2d3c4b5a", "a5b4c3d2e1f0"


def upstream_id(i):
    if provider == "sendgrid":
        return f"SGq{i:019d}"
    if provider == "ses":
        return f"0100018c{i:08x}-1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809-000000"
    return f"<m{i:010d}@acme.example>"


with open(f"{out}/audit.jsonl", "w") as f:
    for i in range(n):
        pin, tenant = (PIN_A, "acme") if i % 2 == 0 else (PIN_B, "bravo")
        up = upstream_id(i)
        mid = up if provider == "m365" else f"<m{i:010d}@{tenant}.example>"
        f.write(
            '{"ts":"2026-12-07T01:00:00.000Z","level":"info","event":"message",'
            f'"tenant":"{tenant}","session":"s-{i}","peer":"127.0.0.1:40000",'
            f'"client_identity":"apikey","credential":"{pin}","upstream":"smtp.provider.example:587",'
            f'"client_sni":null,"result":"relayed","sender_domain":"{tenant}.example",'
            f'"recipients":1,"bytes":1024,"reply":"250 Ok {up}","upstream_id":"{up}",'
            f'"message_id":"{mid}","reason":null}}\n'
        )


def event_id(k):
    i = 2 * k % n  # account a's messages
    return upstream_id(i) if k % 1000 != 999 else upstream_id(n + k)


if provider == "sendgrid":
    with open(f"{out}/events.json", "w") as f:
        for start in range(0, events, 500):
            batch = []
            for k in range(start, min(start + 500, events)):
                batch.append(
                    '{"email":"c%d@example.net","timestamp":1765069200,"smtp-id":"<m%d@acme.example>",'
                    '"event":"processed","category":[],"sg_event_id":"ev%d",'
                    '"sg_message_id":"%s.filterdrecv-5645d9c87f-6r2ch-1-5E2F4DD4-%d.0"}'
                    % (k, k, k, event_id(k), k)
                )
            f.write("[" + ",\n".join(batch) + "]\n")
elif provider == "ses":
    with open(f"{out}/events.jsonl", "w") as f:
        for k in range(events):
            f.write(
                '{"eventType":"Send","mail":{"timestamp":"2026-12-07T01:00:00.000Z",'
                '"source":"billing@acme.example","sendingAccountId":"123456789012",'
                f'"messageId":"{event_id(k)}","destination":["c{k}@example.net"],'
                '"headersTruncated":false},"send":{}}\n'
            )
else:
    with open(f"{out}/events.csv", "w") as f:
        f.write('"Received","SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageId","MessageTraceId"\r\n')
        for k in range(events):
            f.write(
                f'"2026-12-07 01:00:00","billing@acme.example","c{k}@example.net","Invoice","Delivered","","203.0.113.10","1024","{event_id(k)}","{k:032x}"\r\n'
            )
