"""``python -m twinops.rollout``: the controller as a long-running process (a Deployment's command).

With ``--model-uri`` it starts a rollout and follows it to the end. Without, it drives the rollout
recorded on the InferenceService: one started with ``twinops rollout start --detach``, or one whose
controller pod was restarted mid-way. ``--watch SECONDS`` keeps it looking for the next one; while
watching, an InferenceService that does not exist yet (or an API that does not answer) is waited
for, saying so, instead of ending the process. ``--health-port PORT`` serves ``GET /healthz`` for
the Deployment's probes: 200 while the loop beats (every sleep, every decision), 503 once it has
not for ``STALE_AFTER_SECONDS``. Errors a user can fix are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twinops.errors import NotFound, ServiceUnavailable, TwinopsError
from twinops.rollout.plan import APPROVE_FLAG, DEFAULT_INTERVAL, DEFAULT_STEPS, HEALTH_MODES, Thresholds
from twinops.rollout.runner import (
    DEFAULT_NAMESPACE,
    HEALTH_FLAG,
    RolloutOptions,
    make_controller,
    start_rollout,
)
from twinops.settings import get_settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m twinops.rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--isvc", required=True, help="InferenceService to roll out on.")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE),
        help="Namespace of the InferenceService (default: POD_NAMESPACE, the pod's own).",
    )
    parser.add_argument("--model-uri", default=None, help="Start a rollout of this model first.")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="Traffic percents, increasing, up to 100.")
    parser.add_argument(
        "--interval", default=DEFAULT_INTERVAL, help="Time at each step (5m), or one per step (1m,5m,5m,10m)."
    )
    parser.add_argument(APPROVE_FLAG, type=int, default=None, help="Wait for `twinops rollout promote` here.")
    parser.add_argument("--golden", default="latest", help="Golden set; 'none' skips scoring.")
    parser.add_argument(HEALTH_FLAG, choices=HEALTH_MODES, default="auto", help="Where health comes from.")
    parser.add_argument("--watch", type=float, default=0.0, help="Seconds between looks for a rollout.")
    parser.add_argument("--health-port", type=int, default=0, help="Serve GET /healthz on this port (0: no).")
    return parser.parse_args(argv)


# Longer than any step of the loop between two beats: a sleep chunk (a third of the lease) or one
# analysis of the canary (the golden set answered by a busy server).
STALE_AFTER_SECONDS = 600.0


class Heartbeat:
    """When the controller's loop last made progress, and what it is doing."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.doing = "starting"

    def beat(self, doing: str | None = None) -> None:
        self.last = time.monotonic()
        if doing is not None:
            self.doing = doing

    def report(self) -> tuple[int, dict]:
        quiet = time.monotonic() - self.last
        code = 200 if quiet < STALE_AFTER_SECONDS else 503
        return code, {
            "status": "ok" if code == 200 else "stalled",
            "doing": self.doing,
            "quiet_s": round(quiet, 1),
        }


def serve_health(port: int, heartbeat: Heartbeat) -> ThreadingHTTPServer:
    """``GET /healthz`` on ``port`` in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            code, body = heartbeat.report() if self.path == "/healthz" else (404, {"error": "not found"})
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - the kubelet probes the pod IP
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = RolloutOptions(
        isvc=args.isvc,
        namespace=args.namespace,
        golden=None if args.golden == "none" else args.golden,
        health=args.health,
    )
    heartbeat = Heartbeat()
    if args.health_port:
        serve_health(args.health_port, heartbeat)

    def say(message: str) -> None:
        heartbeat.beat(message)
        _say(message)

    def sleep(seconds: float) -> None:
        time.sleep(seconds)
        heartbeat.beat()

    try:
        settings = get_settings()
        controller = make_controller(options, settings, on_event=say, sleep=sleep)
        if args.model_uri:
            state = start_rollout(
                options,
                settings,
                model_uri=args.model_uri,
                steps=args.steps,
                interval=args.interval,
                thresholds=Thresholds(),
                approve_at=args.approve_at,
                controller=controller,
            )
            _say(f"rollout {state.phase.replace('_', ' ')}")
        while True:
            try:
                state = controller.target.load()
            except (NotFound, ServiceUnavailable) as error:
                if args.watch <= 0:
                    raise
                say(f"waiting: {error}")  # e.g. applied before the InferenceServices
                sleep(args.watch)
                continue
            # A finished rollout whose registry step a crash interrupted is finished here too.
            if state is not None and not (state.finished and state.registry_synced):
                say(f"continuing the rollout of {state.model_uri} at {state.percent}% ({state.phase})")
                state = controller.run(state)
                say(f"rollout {state.phase.replace('_', ' ')}")
            if args.watch <= 0:
                return 0
            heartbeat.beat(f"watching {args.namespace}/{args.isvc} every {args.watch:g}s")
            sleep(args.watch)
    except TwinopsError as error:
        _say(f"error: {error}")
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
