"""The device agent: a process that serves one (simulated) device.

It registers over HTTP with an API token, then beats every `--heartbeat` seconds (and at
once when a test finishes): each beat hands in the results finished since the last one,
says what it is running, and takes back what to stop and what to start. It runs each
assigned test script for its expected duration (scaled by `--time-scale`) with the
test's failure behaviour (its planted causes and flakiness). A result stays with the agent
until a beat's answer says it was recorded (or refused), so a failed beat loses nothing.
Work is not lost either: every answer hands out again what the platform holds for this
device and the beat did not report running (an answer lost after the platform assigned
it); the agent starts an execution once, ignoring one it already runs or has finished.

Trust: registration gives the agent a key and the platform's identity. The agent signs
every request with that key and takes work only from an answer signed with the same key
that names the same platform and device; anything else is refused and logged. A platform
that has forgotten the agent (404) is registered with again.

    python -m popcorn.devicelab.agent --url http://127.0.0.1:8000 --token T \\
        --name tv-lab-01 --platform tv --family vendorA-2021 --hdr hdr10 --time-scale 0.01
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
from typing import Any

import httpx

from popcorn.devicelab.prediction import outcome
from popcorn.devicelab.protocol import API, SIGNATURE_HEADER, canonical, sign, verify

log = logging.getLogger("popcorn.devicelab.agent")


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = args.url.rstrip("/")
        self.client = httpx.Client(
            timeout=10.0,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {args.token}"},
        )
        self.key = ""
        self.platform = ""
        self.running: dict[int, threading.Event] = {}
        self.finished: dict[int, dict[str, Any]] = {}  # results not yet recorded
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.rng = random.Random(args.seed)
        self.refused = 0

    def device(self) -> dict[str, Any]:
        a = self.args
        return {
            "name": a.name,
            "platform": a.platform,
            "model": a.model,
            "family": a.family,
            "os_version": a.os_version,
            "firmware": a.firmware,
            "resolution": a.resolution,
            "hdr": a.hdr,
            "drm_level": a.drm_level,
            "sdk_version": a.sdk_version,
            "tags": a.tag,
            "pool": a.pool,
            "site": a.site,
            "slots": a.slots,
        }

    def register(self) -> None:
        while not self.stop.is_set():
            try:
                response = self.client.post(
                    f"{self.url}{API}/register", json={"device": self.device(), "version": "1"}
                )
                if response.status_code == 200:
                    body = response.json()
                    self.key, self.platform = body["agent_key"], body["platform_id"]
                    log.info("registered %s with platform %s", self.args.name, self.platform)
                    return
                log.warning(
                    "registration refused: HTTP %s %s", response.status_code, response.text[:300]
                )
                if response.status_code in (401, 403, 422):
                    raise SystemExit(f"registration refused: {response.text[:300]}")
            except httpx.HTTPError as exc:
                log.warning("registration failed: %s", exc)
            self.stop.wait(1.0)

    def call(self, path: str, body: dict[str, Any]) -> httpx.Response:
        data = canonical(body)
        return self.client.post(
            f"{self.url}{API}/{self.args.name}/{path}",
            content=data,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.key, data)},
        )

    def trusted(self, response: httpx.Response) -> dict[str, Any] | None:
        """The answer's body if the platform we registered with signed it for us."""
        if not verify(self.key, response.content, response.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            log.error("refused work: the answer is not signed with this agent's key")
            return None
        body = response.json()
        if body.get("platform_id") != self.platform or body.get("device") != self.args.name:
            self.refused += 1
            log.error("refused work: the answer names another platform or device")
            return None
        return dict(body)

    def beat(self) -> None:
        with self.lock:
            running = sorted(self.running)
            results = [self.finished[k] for k in sorted(self.finished)][:256]
        try:
            response = self.call("poll", {"running": running, "results": results})
        except httpx.HTTPError as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        if response.status_code in (403, 404):
            log.warning(
                "platform does not know this agent (HTTP %s): registering again",
                response.status_code,
            )
            self.register()
            return
        if response.status_code != 200:
            log.warning("heartbeat refused: HTTP %s %s", response.status_code, response.text[:200])
            return
        body = self.trusted(response)
        if body is None:
            return
        with self.lock:
            for refused in body.get("refused", []):
                log.warning("result refused: %s", refused)
                self.finished.pop(int(refused["execution"]), None)
            for execution in body.get("recorded", []):
                self.finished.pop(int(execution), None)
            for execution in body.get("cancel", []):
                event = self.running.get(int(execution))
                if event is not None:
                    event.set()
        for assignment in body.get("assignments", []):
            execution = int(assignment["execution"])
            cancel = threading.Event()
            with self.lock:
                if execution in self.running or execution in self.finished:
                    continue  # redelivered, and already ours: run it once
                self.running[execution] = cancel
            if assignment.get("redelivered"):
                log.info("execution %s handed out again: an earlier answer was lost", execution)
            threading.Thread(target=self.execute, args=(assignment, cancel), daemon=True).start()

    def execute(self, assignment: dict[str, Any], cancel: threading.Event) -> None:
        execution = int(assignment["execution"])
        behaviour = assignment.get("behaviour") or {}
        build = assignment.get("build") or {}
        rng = random.Random(f"{self.args.seed}:{execution}")
        key = f"{build.get('id')}:{assignment['test']}"
        status, kind, message = outcome(
            behaviour, key, self.args.family, build.get("components", []), rng
        )
        duration = float(assignment["expected_duration_s"]) * rng.uniform(0.8, 1.2)
        if rng.random() < float(behaviour.get("hang_rate", 0.0)):
            duration = float(assignment["timeout_s"]) * 3  # hangs: the platform times it out
        started = time.monotonic()
        cancelled = cancel.wait(duration * self.args.time_scale)
        with self.lock:
            self.running.pop(execution, None)
            if not cancelled and not self.stop.is_set():
                self.finished[execution] = {
                    "execution": execution,
                    "status": status,
                    "duration_s": round(duration, 3),
                    "message": message,
                    "failure_kind": kind,
                }
                self.wake.set()  # hand it in now rather than at the next beat
        log.info(
            "execution %s %s after %.2fs",
            execution,
            status if not cancelled else "cancelled",
            time.monotonic() - started,
        )

    def serve(self) -> None:
        self.register()
        while not self.stop.is_set():
            self.wake.clear()
            self.beat()
            self.wake.wait(self.args.heartbeat)

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="popcorn-devicelab-agent", description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("POPCORN_URL", "http://127.0.0.1:8000"))
    p.add_argument("--token", default=os.environ.get("POPCORN_TOKEN", ""))
    p.add_argument("--name", required=True)
    p.add_argument("--platform", default="tv")
    p.add_argument("--model", default="")
    p.add_argument("--family", default="")
    p.add_argument("--os-version", default="")
    p.add_argument("--firmware", default="")
    p.add_argument("--resolution", default="1080p")
    p.add_argument("--hdr", action="append", default=[])
    p.add_argument("--drm-level", default="")
    p.add_argument("--sdk-version", default="")
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--pool", default="default")
    p.add_argument("--site", default="")
    p.add_argument("--slots", type=int, default=1)
    p.add_argument("--heartbeat", type=float, default=2.0, help="Seconds between beats.")
    p.add_argument("--time-scale", type=float, default=1.0, help="Multiplies test durations.")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.token:
        print("error: an API token is needed (--token or POPCORN_TOKEN)", file=sys.stderr)
        return 2
    if not args.family:
        args.family = f"{args.platform}-{args.model or 'generic'}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    agent = Agent(args)
    signal.signal(signal.SIGTERM, lambda *_: agent.shutdown())
    try:
        agent.serve()
    except KeyboardInterrupt:
        agent.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
