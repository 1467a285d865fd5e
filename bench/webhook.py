"""POSTs one AdmissionReview to the webhook N times over one keep-alive HTTPS
connection and prints p50/p99/max latency (client-side, request written to
response read) and the webhook's RSS. Driven by bench/webhook.sh.

    python3 bench/webhook.py CA_FILE PORT PID REQUEST_FILE [N]
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


def main() -> None:
    ca, port, pid, request = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 5000
    body = open(request, "rb").read()
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=10)
    headers = {"Content-Type": "application/json"}
    idle = rss_kib(pid, "VmRSS")
    samples = []
    for i in range(200 + n):
        start = time.perf_counter()
        conn.request("POST", "/mutate", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200 or b'"patchType":"JSONPatch"' not in data:
            sys.exit(f"request {i}: HTTP {resp.status}: {data[:200]!r}")
        if i >= 200:  # after warm-up
            samples.append(elapsed)
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    print(f"/mutate ({len(body)} B pod, {n} requests, one keep-alive connection): "
          f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms, max {samples[-1] * 1000:.2f} ms, "
          f"{n / sum(samples):.0f} req/s; webhook RSS idle {idle / 1024:.1f} MiB, "
          f"after {rss_kib(pid, 'VmRSS') / 1024:.1f} MiB (peak {rss_kib(pid, 'VmHWM') / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
