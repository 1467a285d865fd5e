#!/usr/bin/env python3
"""Startup benchmark: time from exec of `smtpbind run` to the first 200 on
/readyz (policy parsed, credential pin-checked, listener bound), over N runs,
side by side with the floor: exec of `smtpbind --version` to its exit.

Usage: bench/startup.py [path/to/smtpbind] [runs]   (default target/release/smtpbind, 30)
"""
import hashlib, os, socket, statistics, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/smtpbind"
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 30


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def main():
    d = tempfile.mkdtemp()
    sec = os.path.join(d, "secret")
    os.makedirs(sec)
    key = b"SG.startup-bench-key"
    open(os.path.join(sec, "username"), "w").write("apikey")
    open(os.path.join(sec, "password"), "wb").write(key)
    pin = "sha256:" + hashlib.sha256(key).hexdigest()
    policy = os.path.join(d, "policy.yaml")
    open(policy, "w").write(f"""version: 1
tenant: bench
upstream:
  address: smtp.example.net:587
  tls: starttls
credential:
  secret_dir: {sec}
  pins: ["{pin}"]
client:
  accept: [{{username: apikey, password: mounted}}]
senders: ["*@bench.example"]
""")
    ready_ms, floor_ms = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run([BIN, "--version"], stdout=subprocess.DEVNULL, check=True)
        floor_ms.append((time.perf_counter() - t0) * 1000)

        admin = free_port()
        t0 = time.perf_counter()
        p = subprocess.Popen([BIN, "run", "--policy", policy, "--listen", "127.0.0.1:0",
                              "--admin", f"127.0.0.1:{admin}"], stdout=subprocess.DEVNULL)
        while not ready(admin):
            if time.perf_counter() - t0 > 5:
                p.kill()
                sys.exit("not ready within 5 s")
            time.sleep(0.0005)
        ready_ms.append((time.perf_counter() - t0) * 1000)
        p.terminate()
        p.wait()
    q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(len(xs) * f))]
    print(f"machine: {os.cpu_count()} cores")
    print(f"exec -> exit of `smtpbind --version` (floor): median {statistics.median(floor_ms):.1f} ms, p95 {q(floor_ms, .95):.1f} ms")
    print(f"exec -> /readyz 200:                         median {statistics.median(ready_ms):.1f} ms, p95 {q(ready_ms, .95):.1f} ms, max {max(ready_ms):.1f} ms over {RUNS} runs")


if __name__ == "__main__":
    main()
