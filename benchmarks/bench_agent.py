"""Bolt agent benchmarks: what a remote action costs over running the same program locally.

The agent runs as its own process on loopback with mutual TLS. Baseline, in the
same run: `subprocess.run` of the same script on the same machine (no network,
no TLS, no validation, no audit), i.e. the floor any remote-execution agent
sits on. SSH (`ssh host cmd`) is the tool operators would otherwise use, but no
sshd runs on the benchmark machine.

Run: .venv/bin/python benchmarks/bench_agent.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from popcorn.remediation.agent import AgentClient

sys.path.insert(0, str(Path(__file__).parent))
from common import LoadWatch, git_revision, machine, write_result

STREAM_BYTES = 64 * 1024 * 1024


def _pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, san in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{name}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        paths[name] = directory / f"{name}.crt"
        paths[f"{name}_key"] = directory / f"{name}.key"
        paths[name].write_bytes(
            builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        paths[f"{name}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def _scripts(directory: Path) -> dict[str, Path]:
    directory.mkdir()
    noop = directory / "noop.sh"
    noop.write_text("#!/bin/sh\necho ok\n")
    flood = directory / "flood.sh"
    flood.write_text(f"#!/bin/sh\nhead -c {STREAM_BYTES} /dev/zero | tr '\\0' x\n")
    for script in (noop, flood):
        script.chmod(0o755)
        (directory / f"{script.stem}.yaml").write_text(
            yaml.safe_dump({"script": script.name, "timeout": 120})
        )
    return {"noop": noop, "flood": flood}


def _start(
    directory: Path, pki: dict[str, Path], scripts: Path
) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = directory / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "host": "127.0.0.1",
                "port": port,
                "cert_file": str(pki["server"]),
                "key_file": str(pki["server_key"]),
                "ca_file": str(pki["ca"]),
                "scripts_dir": str(scripts),
                "audit_log": str(directory / "audit.jsonl"),
                "output_cap_bytes": 2 * STREAM_BYTES,
                "max_concurrent_runs": 16,
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "popcorn.remediation.agent",
            "--config",
            str(config),
            "--log-level",
            "WARNING",
        ],
    )
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/health", verify=context, timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the agent did not start")


def _latencies(call: Callable[[], object], count: int) -> list[float]:
    call()  # warm up
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.95) - 1] * 1000


def main() -> None:
    watch = LoadWatch()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    options = parser.parse_args()
    count = 50 if options.quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        pki = _pki(base)
        scripts = _scripts(base / "scripts")
        proc, url = _start(base, pki, base / "scripts")
        try:
            args = (url, pki["client"], pki["client_key"], pki["ca"])
            client = AgentClient(*args)
            local = _latencies(
                lambda: subprocess.run([str(scripts["noop"])], capture_output=True, check=True),
                count,
            )
            remote = _latencies(lambda: client.run("noop"), count)

            def fresh() -> None:
                with AgentClient(*args) as one:
                    one.run("noop")

            handshake = _latencies(fresh, count // 2)
            health = _latencies(client.health, count)

            workers = 8
            clients = [AgentClient(*args) for _ in range(workers)]
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda i: clients[i % workers].run("noop"), range(count)))
            parallel = count / (time.perf_counter() - start)
            start = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                list(
                    pool.map(
                        lambda _: subprocess.run([str(scripts["noop"])], capture_output=True),
                        range(count),
                    )
                )
            parallel_local = count / (time.perf_counter() - start)

            start = time.perf_counter()
            streamed = sum(len(e.get("data", "")) for e in client.stream("flood"))
            stream_s = time.perf_counter() - start
            start = time.perf_counter()
            local_bytes = len(subprocess.run([str(scripts["flood"])], capture_output=True).stdout)
            local_stream_s = time.perf_counter() - start
            assert streamed == local_bytes == STREAM_BYTES, (streamed, local_bytes)
            for c in [client, *clients]:
                c.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    rows = [
        ("script action, kept-alive connection", _ms(remote), _ms(local)),
        ("script action, new mTLS connection each call", _ms(handshake), _ms(local)),
    ]
    mib = STREAM_BYTES / 2**20
    lines = [
        "## Bolt agent",
        "",
        f"Measured {dt.date.today()} on {machine()}; {watch.note()}; revision {git_revision()}.",
        f"`.venv/bin/python benchmarks/bench_agent.py{' --quick' if options.quick else ''}`",
        "",
        "Agent as its own process on loopback, mutual TLS (ECDSA P-256, TLS 1.3), audit log on. "
        "Baseline: `subprocess.run` of the same script locally (no network, TLS, validation "
        "or audit), the floor under any remote-execution agent.",
        "",
        f"### Latency per call ({count} calls, sequential)",
        "",
        "| call | agent p50 ms | agent p95 ms | local p50 ms | local p95 ms | p50 ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (p50, p95), (lp50, lp95) in rows:
        lines.append(
            f"| {name} | {p50:.2f} | {p95:.2f} | {lp50:.2f} | {lp95:.2f} | {p50 / lp50:.2f}x |"
        )
    hp50, hp95 = _ms(health)
    lines += [
        f"| GET /v1/health (no process) | {hp50:.2f} | {hp95:.2f} | n/a | n/a | n/a |",
        "",
        "### Throughput",
        "",
        "| measure | agent | local | ratio |",
        "|---|---:|---:|---:|",
        f"| script runs/s, {workers} parallel callers | {parallel:.0f} | {parallel_local:.0f} | "
        f"{parallel / parallel_local:.2f}x |",
        f"| streamed stdout, {mib:.0f} MiB, MiB/s | {mib / stream_s:.0f} | "
        f"{mib / local_stream_s:.0f} | {local_stream_s / stream_s:.2f}x |",
        "",
        "The agent's cost per call is a TLS request, argument validation, a process group, "
        "the audit line and a JSON answer; with 2 shared cores the caller, the agent and the "
        "script compete for the same CPUs. Streaming wraps each pipe read in a JSON line and an "
        "HTTP chunk.",
    ]
    text = "\n".join(lines)
    print(text)
    write_result("agent", text)


if __name__ == "__main__":
    main()
