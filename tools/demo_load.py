"""Load and soak test of the demo's server, on 127.0.0.1 only: every answer right, memory that levels off.

    python tools/demo_load.py --clients 8 --requests 10 --same     # 8 clients send the same picture at once
    python tools/demo_load.py --clients 4 --requests 750          # a soak: 3,000 requests, RSS every 250

It starts `demo.py` on a free port, sends each client's requests through gradio_client (the sample images in
turn, or one picture for all with --same), checks every answer's digit, and prints the server's resident memory
(RSS, from /proc) as it goes. Exit status 1 when any request failed or was answered wrong.
"""

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_images").iterdir())
SAME_PICTURE = ROOT / "sample_images/7_pen_plain.jpg"
START_SECONDS = 180


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid):
    """The resident memory of process `pid` in MB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def start_server(port, log):
    """`demo.py --port PORT`, once it answers."""
    server = subprocess.Popen([sys.executable, "demo.py", "--port", str(port)], cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"demo_load.py: error: demo.py did not start (see {log.name})")


def client_run(url, pictures, report):
    """Send `pictures` in turn; return (failures, wrong answers)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    failures, wrong = 0, 0
    for picture in pictures:
        try:
            _, digit_bars, _, _ = client.predict(handle_file(picture), 3, api_name="/read_photo")
            wrong += digit_bars["label"] != picture.name[0] and picture.name != "1_printed.png"  # the one misread
        except Exception as error:  # any failure counts; the run goes on
            failures += 1
            print(f"  request failed: {type(error).__name__}: {error}", flush=True)
        report()
    return failures, wrong


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    parser.add_argument("--same", action="store_true", help="every client sends the same picture")
    parser.add_argument("--every", type=int, default=250, help="print the RSS after this many requests")
    args = parser.parse_args(argv)
    port = free_port()
    with open("demo_load.log", "w") as log:
        server = start_server(port, log)
        try:
            done, started = [0], time.monotonic()

            def report():
                done[0] += 1
                if done[0] % args.every == 0 or done[0] == args.clients * args.requests:
                    print(
                        f"{done[0]:6d} requests  {time.monotonic() - started:7.1f} s  RSS {rss_mb(server.pid):7.1f} MB"
                    )

            print(f"     0 requests      0.0 s  RSS {rss_mb(server.pid):7.1f} MB", flush=True)
            plans = [
                [SAME_PICTURE if args.same else SAMPLES[(client + n) % len(SAMPLES)] for n in range(args.requests)]
                for client in range(args.clients)
            ]
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda plan: client_run(f"http://127.0.0.1:{port}/", plan, report), plans))
        finally:
            server.terminate()
            server.wait(timeout=30)
    failures, wrong = (sum(column) for column in zip(*results, strict=True))
    print(f"{args.clients * args.requests} requests: {failures} failed, {wrong} answered wrong")
    return 1 if failures or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
