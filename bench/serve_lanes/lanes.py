"""Decode throughput of `nmk serve` with one lane against several, in the same script.

Starts the server (threads from NMK_THREADS, default 1) on a fresh home for each run, sends CLIENTS chat requests at once (each
asking for TOKENS tokens of a story, greedy), and measures generated tokens per second of wall
time. Runs alternate between the lane counts REPEATS times; the medians and their ratio are
printed and written as JSON to the path given as the first argument (if any).
"""
import json, os, statistics, subprocess, sys, tempfile, threading, time, urllib.request

NMK = os.environ.get("NMK_BIN", "target/release/nmk")
MODEL = os.environ.get("NMK_LANES_MODEL", "smollm2-135m-instruct")
CLIENTS, TOKENS, REPEATS = 8, 64, int(os.environ.get("NMK_LANES_REPEATS", "3"))
LANES = [1, 8]


def one_run(lanes):
    home = tempfile.mkdtemp()
    server = subprocess.Popen(
        [NMK, "serve", "--port", "0", "--model", MODEL, "--max-lanes", str(lanes)],
        env={**os.environ, "NMK_HOME": home},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        addr = server.stdout.readline().strip().split("http://")[1]
        tokens, errors = [], []

        def client(i):
            body = json.dumps({"model": MODEL, "max_tokens": TOKENS, "messages": [
                {"role": "user", "content": f"Write a long story about the number {i}."}]}).encode()
            req = urllib.request.Request(f"http://{addr}/v1/chat/completions", body,
                                         {"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    tokens.append(json.load(r)["usage"]["completion_tokens"])
            except Exception as e:  # a failed request makes the run invalid
                errors.append(repr(e))

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        if errors:
            sys.exit(f"lanes={lanes}: {errors}")
        return sum(tokens), wall
    finally:
        server.terminate()
        server.wait()


runs = {n: [] for n in LANES}
for _ in range(REPEATS):
    for n in LANES:
        tok, wall = one_run(n)
        runs[n].append(tok / wall)
        print(f"lanes={n}: {tok} tokens in {wall:.2f} s = {tok / wall:.1f} tok/s", flush=True)
medians = {n: statistics.median(v) for n, v in runs.items()}
report = {
    "model": MODEL, "threads": int(os.environ.get("NMK_THREADS", "1")), "clients": CLIENTS, "max_tokens": TOKENS, "repeats": REPEATS,
    "cpus": os.cpu_count(), "tok_per_s": runs, "median_tok_per_s": medians,
    "ratio_8_lanes_over_1": medians[8] / medians[1], "unix_time": int(time.time()),
}
print(json.dumps(report, indent=2))
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump(report, f, indent=2)
