"""``python -m twinops.rollout``: the controller as a long-running process (a Deployment's command).

With ``--model-uri`` it starts a rollout and follows it to the end. Without, it drives the rollout
recorded on the InferenceService: one started with ``twinops rollout start --detach``, or one whose
controller pod was restarted mid-way. ``--watch SECONDS`` keeps it looking for the next one.
Errors a user can fix are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from twinops.errors import TwinopsError
from twinops.rollout.plan import APPROVE_FLAG, DEFAULT_INTERVAL, DEFAULT_STEPS, Thresholds
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
    parser.add_argument(
        HEALTH_FLAG, choices=("auto", "prometheus", "probe"), default="auto", help="Where health comes from."
    )
    parser.add_argument("--watch", type=float, default=0.0, help="Seconds between looks for a rollout.")
    return parser.parse_args(argv)


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
    try:
        settings = get_settings()
        controller = make_controller(options, settings, on_event=_say)
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
            state = controller.target.load()
            # A finished rollout whose registry step a crash interrupted is finished here too.
            if state is not None and not (state.finished and state.registry_synced):
                _say(f"continuing the rollout of {state.model_uri} at {state.percent}% ({state.phase})")
                state = controller.run(state)
                _say(f"rollout {state.phase.replace('_', ' ')}")
            if args.watch <= 0:
                return 0
            time.sleep(args.watch)
    except TwinopsError as error:
        _say(f"error: {error}")
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
