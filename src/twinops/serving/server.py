"""Start a twinops model on kserve's ModelServer: KServe's runtime flags, plus the project's own.

Every runtime module (``python -m twinops.serving.llm`` and its siblings, each holding its model
class and its ``main()``) builds its parser here, so they all take kserve's flags (``--model_name``,
``--http_port``, ``--grpc_port``, ``--workers``, ``--enable_docs_url``, ...) and the same
``--host``, ``--model_dir`` and ``--model_uri``. The OpenAI routes are mounted on the same FastAPI
app that serves V1 and V2, and kserve's gRPC server answers V2 over gRPC from the same models.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fastapi.exceptions import RequestValidationError

from twinops.errors import ConfigError, ModelNotFound, TwinopsError, first_problem

DEFAULT_HOST = "0.0.0.0"  # noqa: S104 - in a pod the server must answer on the pod's address


def build_parser(prog: str, description: str, *, model_name: str) -> argparse.ArgumentParser:
    """kserve's ModelServer flags plus ``--host``; runtimes add their own model flags."""
    from kserve.model_server import parser as kserve_parser

    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        parents=[kserve_parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.set_defaults(model_name=model_name)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="Address the REST server binds (twinops serve uses 127.0.0.1).",
    )
    add_request_limits(parser)
    return parser


def add_request_limits(parser: argparse.ArgumentParser) -> None:
    """``--max_body_bytes`` and ``--max_in_flight``: what one client can make the server hold."""
    from twinops.serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT

    parser.add_argument(
        "--max_body_bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="A larger request body is refused with 413.",
    )
    parser.add_argument(
        "--max_in_flight",
        type=int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help="Requests answered at once; one more is refused with 429 and Retry-After.",
    )


def add_model_source(parser: argparse.ArgumentParser, *, what: str, registry_name: str | None) -> None:
    """``--model_dir`` (a folder, KServe's storage-initializer path) or ``--model_uri``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model_dir", default=None, help=f"Folder of the {what} (e.g. /mnt/models).")
    example = f" such as models:/{registry_name}@champion" if registry_name else ""
    source.add_argument(
        "--model_uri",
        default=None,
        help=f"MLflow registry URI{example}, a folder, or an HF id / bundled:NAME.",
    )


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.workers != 1:
        # uvicorn's workers re-import kserve's app and lose the OpenAI routes and the batcher's
        # single queue: scale with replicas (KServe autoscaling) instead.
        raise ConfigError(
            f"--workers {args.workers} is not supported: run one worker per process and scale with "
            "replicas (minReplicas/maxReplicas in the InferenceService)"
        )
    return args


def load_model(model, *, what: str) -> None:
    """``model.load()``, where weights that cannot be read are the user's to fix (one line, exit 2).

    The folder passed every path check (it exists, it has a config.json), so transformers' or
    sentence-transformers' complaint about its contents is what the user needs to see.
    """
    from twinops.models.hf import error_line

    try:
        model.load()
    except (OSError, ValueError) as error:
        raise ModelNotFound(
            f"{model.model_dir} cannot be loaded as a {what} ({error_line(error)}): pass --model_dir or "
            f"--model_uri of a {what} folder",
        ) from error


async def _unreadable_body(request, error):
    """FastAPI answers a body it cannot parse with 422 ``{"detail": [...]}``; V1/V2 clients expect
    400 ``{"error": "..."}`` (the OpenAI routes parse their own bodies and never get here)."""
    from fastapi.responses import JSONResponse

    # Name the field ("inputs: Field required"), not just the complaint; "body" is FastAPI's root.
    problem = first_problem(error, skip=("body",))
    if problem.kind == "json_invalid":  # a JSON error's location is a character offset
        problem = problem._replace(where="")
    return JSONResponse(status_code=400, content={"error": f"{problem.line()}: send a valid JSON body"})


def serve(models: list, args: argparse.Namespace, *, openai_models: list | None = None) -> None:
    """Register ``models`` with kserve's ModelServer, mount the OpenAI routes, and run."""
    from kserve import ModelServer
    from kserve import model_server as kserve_server

    from twinops.serving.protocol.openai.endpoints import register_openai_routes
    from twinops.serving.protocol.v2 import DataPlane

    register_openai_routes(kserve_server.app, openai_models if openai_models is not None else models)
    kserve_server.app.add_exception_handler(RequestValidationError, _unreadable_body)
    limit_requests(kserve_server.app, args, server=args.model_name)

    class _Server(ModelServer):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.dataplane = DataPlane(model_registry=self.registered_models)

        def setup_event_loop(self) -> None:
            super().setup_event_loop()
            # kserve binds REST on 0.0.0.0; locally the servers answer on loopback only.
            if self._rest_server is not None:
                self._rest_server.config.host = args.host

    _Server(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
    ).start(models)


def limit_requests(app, args: argparse.Namespace, *, server: str) -> None:
    """Wrap ``app`` in the body-size and in-flight limits its flags set (twinops.serving.limits)."""
    from twinops.serving.limits import RequestLimits

    if args.max_body_bytes < 1 or args.max_in_flight < 1:
        raise ConfigError("--max_body_bytes and --max_in_flight must be at least 1")
    app.add_middleware(
        RequestLimits, max_body_bytes=args.max_body_bytes, max_in_flight=args.max_in_flight, server=server
    )


def run_main(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a runtime's ``main``: a user-fixable error is one line on stderr and exit code 2."""
    try:
        main(argv)
    except TwinopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
