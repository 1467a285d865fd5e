"""POSTs AdmissionReviews to the webhook N times each over one keep-alive
HTTPS connection and prints p50/p99/max latency (client-side, request written
to response read) for /mutate (a typical pod to inject) and /validate (the
injected pod, every rule run), and the webhook's RSS. Driven by
bench/webhook.sh.

    python3 bench/webhook.py CA_FILE PORT PID MUTATE_REQUEST [N] [VALIDATE_REQUEST]
"""

import http.client
import ssl
import statistics
import sys
import time


def rss_kib(pid: str, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run(conn: http.client.HTTPSConnection, path: str, body: bytes, expect: bytes, n: int) -> list[float]:
    headers = {"Content-Type": "application/json"}
    samples = []
    for i in range(200 + n):
        start = time.perf_counter()
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200 or expect not in data:
            sys.exit(f"{path} request {i}: HTTP {resp.status}: {data[:300]!r}")
        if i >= 200:  # after warm-up
            samples.append(elapsed)
    return samples


def report(path: str, size: int, samples: list[float]) -> None:
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    print(f"{path} ({size} B pod, {len(samples)} requests, one keep-alive connection): "
          f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms, max {samples[-1] * 1000:.2f} ms, "
          f"{len(samples) / sum(samples):.0f} req/s")


def main() -> None:
    ca, port, pid, request = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 5000
    validate = sys.argv[6] if len(sys.argv) > 6 else None
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=10)
    idle = rss_kib(pid, "VmRSS")
    body = open(request, "rb").read()
    report("/mutate", len(body), run(conn, "/mutate", body, b'"patchType":"JSONPatch"', n))
    if validate:
        body = open(validate, "rb").read()
        report("/validate", len(body), run(conn, "/validate", body, b'"allowed":true', n))
    print(f"webhook RSS idle {idle / 1024:.1f} MiB, after {rss_kib(pid, 'VmRSS') / 1024:.1f} MiB "
          f"(peak {rss_kib(pid, 'VmHWM') / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
