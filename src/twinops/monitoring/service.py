"""The online drift detector: CloudEvents from the InferenceService logger in, drift verdicts out.

``create_app(detector)`` is an ASGI app on Starlette (no kserve needed, so it also runs in ``.venv-drift``):

- ``POST /`` takes one CloudEvent (binary or structured mode), or a batched-mode delivery
  (``application/cloudevents-batch+json``: an array of structured events, queued all or none;
  the reply's ``meta.accepted`` counts them). Texts are queued in their space (requests:
  ``queries``, responses: ``answers``); once ``batch_size`` have gathered, they are
  embedded in one call, tested by every detector of the space, and the reply carries the verdict
  in the shape of Seldon's alibi-detect server: ``{"data": {"is_drift", "distance", "p_val",
  "threshold"}, "meta": {...}}`` (the first detector's, all of them under ``meta.detectors``).
  Until then the reply is ``{"data": null, "meta": {"pending": k, "batch_size": N}}``. An event
  that fills several batches has each tested (the reply carries the last verdict), so fewer than
  ``batch_size`` texts ever wait.
- That verdict in the reply is Seldon's way (``verdict_in_reply``), and it holds the sender while the
  batch is tested. By default the delivery that fills a batch is answered at once, ``202`` with
  ``meta.testing`` (the batches it filled), and the verdict reaches ``/metrics``, the reply URL, the
  webhook and the retraining trigger when its test ends: KServe's logger never reads the reply, and
  a logger posting one event at a time no longer waits a whole test every ``batch_size`` events. At
  most ``max_testing`` such deliveries are being tested; past it the next one waits for its reply.
  On shutdown the tests under way end and their verdicts are acted on before the server stops.
- Deliveries are parsed and queued on the event loop; full batches are tested in a worker thread,
  and with ``detectors_process`` (``twinops drift serve``) in a process of its own
  (``monitoring.isolation``), so that parsing never waits for the GIL behind a test. A batch whose
  process dies testing it is logged and counted in ``twinops_drift_batches_failed_total`` (with
  ``verdict_in_reply`` its delivery gets a 500 ``{"error": "detectors_process_died"}``), and the
  next batch is tested by a new process.
- A bad event (malformed CloudEvent, no text, embeddings of another dimension, NaN or infinite
  values) is a 400 with ``{"error": reason, "detail": ...}``, counted by reason; the service keeps
  running.
- Bounded (``EventLimits``): a body past ``max_bytes`` or an event of more than ``max_texts`` texts
  is a 413, and past ``max_waiting`` deliveries in flight a new one is shed with a 429 and
  ``Retry-After``; same shape, counted by reason (``body_too_large``, ``too_many_texts``,
  ``overloaded``).
- ``GET /metrics``: ``twinops_drift_score``, ``twinops_drift_p_value``, ``twinops_drift_threshold``
  and ``twinops_drift_detected`` per detector and space, event and batch counters.
- On a verdict it posts a CloudEvent (``event_type``) to ``reply_url`` (Seldon's reply URL, every
  verdict); on drift it also posts the verdict as JSON to ``webhook_url`` and hands it to the
  retraining trigger.

Before there is a reference to test against (a fresh cluster: no champion, no dataset yet),
``wait_for_reference`` serves ``create_waiting_app``: ready, saying why on ``/healthz``, the events
acknowledged and counted but not tested, until the reference can be resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from twinops.infra.http_body import declared_length, read_bounded_body
from twinops.monitoring.config import EventLimits
from twinops.monitoring.detectors import DriftResult, SpaceDetectors
from twinops.monitoring.events import LoggedEvent, RejectedEvent, is_batch, parse_batch, parse_event
from twinops.monitoring.isolation import DetectorsProcess, DetectorsProcessDied
from twinops.monitoring.retrain import RetrainTrigger

DRIFT_EVENT_TYPE = "org.twinops.drift"
DRIFT_EVENT_SOURCE = "twinops-drift"
INLINE_PARSE_BYTES = 64 * 1024  # bodies up to this size are parsed on the event loop
logger = logging.getLogger(__name__)


class DriftMetrics:
    """The service's Prometheus series, on a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        labels = ("detector", "space")
        self.score = Gauge(
            "twinops_drift_score", "Drift score (distance) of the last batch.", labels, registry=self.registry
        )
        self.p_value = Gauge(
            "twinops_drift_p_value", "p-value of the last batch.", labels, registry=self.registry
        )
        self.threshold = Gauge(
            "twinops_drift_threshold",
            "p-value at or below which a batch drifts.",
            labels,
            registry=self.registry,
        )
        self.detected = Gauge(
            "twinops_drift_detected", "1 when the last batch drifted, else 0.", labels, registry=self.registry
        )
        self.events = Counter(
            "twinops_drift_events_total", "Events accepted, by space.", ("space",), registry=self.registry
        )
        self.rejected = Counter(
            "twinops_drift_events_rejected_total",
            "Events rejected, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.batches = Counter(
            "twinops_drift_batches_total", "Batches tested, by space.", ("space",), registry=self.registry
        )
        self.pending = Gauge(
            "twinops_drift_pending", "Texts waiting for a full batch.", ("space",), registry=self.registry
        )
        self.failed = Counter(
            "twinops_drift_batches_failed_total",
            "Batches whose test failed (their detectors' process died, or an error), by space and reason.",
            ("space", "reason"),
            registry=self.registry,
        )
        self.emit_failures = Counter(
            "twinops_drift_emit_failures_total",
            "Reply/webhook posts that failed.",
            ("target",),
            registry=self.registry,
        )

    def record(self, result: DriftResult) -> None:
        labels = {"detector": result.detector, "space": result.space}
        self.score.labels(**labels).set(result.distance)
        self.p_value.labels(**labels).set(float("nan") if result.p_val is None else result.p_val)
        self.threshold.labels(**labels).set(result.threshold)
        self.detected.labels(**labels).set(int(result.is_drift))


@dataclass
class _Pending:
    texts: list[str | None] = field(default_factory=list)  # None: the row came as a vector
    vectors: list[np.ndarray | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class FilledBatches:
    """The batches a delivery filled, taken off their queues, to be tested: (space, batch) pairs;
    ``meta`` is what its reply says before any test (texts still queued, events accepted)."""

    batches: list[tuple[str, _Pending]]
    meta: dict


class DriftDetector:
    """Batches events per space and runs the space's detectors on each full batch."""

    def __init__(
        self,
        spaces: dict[str, SpaceDetectors],
        embed: Callable[[list[str]], np.ndarray],
        *,
        batch_size: int,
        reference_id: str,
        name: str = "twinops-drift",
        reply_url: str | None = None,
        webhook_url: str | None = None,
        event_type: str = DRIFT_EVENT_TYPE,
        event_source: str = DRIFT_EVENT_SOURCE,
        trigger: RetrainTrigger | None = None,
        http_timeout: float = 5.0,
        limits: EventLimits | None = None,
        detectors_process: DetectorsProcess | None = None,
        verdict_in_reply: bool,
    ) -> None:
        self.spaces = spaces
        self.verdict_in_reply = verdict_in_reply  # DriftConfig.verdict_in_reply: the app reads it
        self.detectors_process = detectors_process  # where batches are tested; None: in this process
        self.embed = embed
        self.batch_size = batch_size
        self.reference_id = reference_id
        self.name = name
        self.reply_url = reply_url
        self.webhook_url = webhook_url
        self.event_type = event_type
        self.event_source = event_source
        self.trigger = trigger
        self.http_timeout = http_timeout
        self.limits = limits or EventLimits()
        self.metrics = DriftMetrics()
        self._pending = {space: _Pending() for space in spaces}
        self._lock = threading.Lock()  # guards the queues: held only to queue and take batches
        # Without a detectors' process, batches are tested here one at a time per space, outside
        # ``_lock``: while one is tested, other deliveries are parsed and queued (the detectors'
        # numpy work and the parsing overlap). A plain lock, taken by the thread that tests: whoever
        # holds it is running, so the worker threads waiting for it can never starve it (a turn
        # handed out on the event loop could).
        self._testing = {space: threading.Lock() for space in spaces}

    # --- events --------------------------------------------------------------------------------
    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        """One HTTP delivery → (status, reply body)."""
        received = self.receive(headers, body)
        return received if isinstance(received, tuple) else self.test(received)

    def receive(self, headers: dict[str, str], body: bytes) -> tuple[int, dict] | FilledBatches:
        """Admit and queue one delivery: its reply when no batch filled (or it was refused), else the
        batches it filled, for ``test``. Cheap (parsing and a short lock), so the app runs it on the
        event loop for small bodies and hands only full batches to a worker thread."""
        batched = is_batch(headers)
        events = self._admit(headers, body, batched=batched)
        if isinstance(events, tuple):
            return events
        filled: list[tuple[str, _Pending]] = []
        with self._lock:
            for event in events:
                self.metrics.events.labels(space=event.space).inc()
                filled += [(event.space, batch) for batch in self._enqueue(event)]
            for space in {event.space for event in events}:
                self.metrics.pending.labels(space=space).set(len(self._pending[space]))
            meta = {"pending": len(self._pending[events[-1].space]), "batch_size": self.batch_size}
        if batched:
            meta["accepted"] = len(events)
        if not filled:
            return 200, {"data": None, "meta": meta}
        return FilledBatches(filled, meta)

    @staticmethod
    def accepted(filled: FilledBatches) -> tuple[int, dict]:
        """The reply of a delivery answered before its batches are tested: 202, their count."""
        return 202, {"data": None, "meta": {**filled.meta, "testing": len(filled.batches)}}

    def test(self, filled: FilledBatches) -> tuple[int, dict]:
        """Run each space's detectors on the batches filled and act on the verdicts; the reply
        carries the last one."""
        tested = []
        died: DetectorsProcessDied | None = None
        try:
            # All the delivery's batches are sent before the first verdict is awaited: a detectors'
            # process tests them back to back, and those of other deliveries between them.
            submitted = [(space, *self._submit(self.spaces[space], batch)) for space, batch in filled.batches]
            for space, verdicts, texts in submitted:
                tested.append((space, self._record(space, verdicts.result()), texts))
        except DetectorsProcessDied as error:
            logger.error("%s", error)
            died = error
            for space, _batch in filled.batches[len(tested) :]:
                self.metrics.failed.labels(space=space, reason="detectors_process_died").inc()
        for space, results, texts in tested:  # the verdicts reached before a death still count
            reply = self._reply(space, results)
            self._emit(reply, results, texts)
        if died is not None:
            return 500, {"error": "detectors_process_died", "detail": str(died)}
        return 200, reply

    def test_after_reply(self, filled: FilledBatches) -> None:
        """``test`` for a delivery already answered: nobody reads its outcome, so a failure is logged
        and counted, and the server goes on."""
        try:
            self.test(filled)  # a detectors' process that died is logged and counted there
        except Exception:
            logger.exception("testing the batches of an answered delivery failed")
            for space, _batch in filled.batches:
                self.metrics.failed.labels(space=space, reason="error").inc()

    def _admit(
        self, headers: dict[str, str], body: bytes, *, batched: bool
    ) -> list[LoggedEvent] | tuple[int, dict]:
        """The delivery's events (one, or a batched-mode delivery's all), or the refusal (status,
        reply) when one is bad or the delivery is too large: a batch is queued whole or not at all."""
        if len(body) > self.limits.max_bytes:
            return self.body_too_large(len(body))
        parsed = parse_batch(body) if batched else parse_event(headers, body)
        if isinstance(parsed, RejectedEvent):
            return self._reject(parsed.reason, parsed.detail)
        events = parsed if isinstance(parsed, list) else [parsed]
        rows = sum(event.count for event in events)
        if rows > self.limits.max_texts:
            return self._reject(
                "too_many_texts",
                f"the {'batch' if batched else 'event'} carries {rows} texts; "
                f"at most {self.limits.max_texts} per delivery",
                status=413,
            )
        for index, event in enumerate(events):
            where = f"event {index} of {len(events)}: " if batched else ""
            detectors = self.spaces.get(event.space)
            if detectors is None:
                return self._reject(
                    "space_not_monitored",
                    f"{where}the reference {self.reference_id} has no {event.space!r} texts to compare with",
                )
            if event.embeddings is not None and event.embeddings.shape[1] != detectors.dimension:
                return self._reject(
                    "wrong_dimension",
                    f"{where}embeddings of dimension {event.embeddings.shape[1]}; "
                    f"the reference has {detectors.dimension}",
                )
        return events

    def body_too_large(self, size: int | None) -> tuple[int, dict]:
        """The 413 of a body past ``max_bytes`` (``size`` None: it was not read to its end)."""
        most = self.limits.max_bytes
        detail = (
            f"the event body passes {most} bytes, the most read"
            if size is None
            else f"the event body is {size} bytes; at most {most} are read"
        )
        return self._reject("body_too_large", detail, status=413)

    def overloaded(self) -> tuple[int, dict]:
        """The 429 of a delivery shed because ``max_waiting`` others are in flight."""
        return self._reject(
            "overloaded",
            f"{self.limits.max_waiting} events are already waiting for the detector: "
            f"retry in {self.limits.retry_after_seconds} s",
            status=429,
        )

    def _reject(self, reason: str, detail: str, *, status: int = 400) -> tuple[int, dict]:
        self.metrics.rejected.labels(reason=reason).inc()
        logger.info("rejected event (%s): %s", reason, detail)
        return status, {"error": reason, "detail": detail}

    def _enqueue(self, event: LoggedEvent) -> list[_Pending]:
        """Queue the event's rows; return every full batch (taken off the queue), so that fewer than
        ``batch_size`` rows stay queued whatever the events carry."""
        pending = self._pending[event.space]
        if event.embeddings is not None:
            pending.texts += [None] * len(event.embeddings)
            pending.vectors += list(event.embeddings)
        else:
            pending.texts += event.texts
            pending.vectors += [None] * len(event.texts)
        batches = []
        while len(pending) >= self.batch_size:
            batches.append(_Pending(pending.texts[: self.batch_size], pending.vectors[: self.batch_size]))
            del pending.texts[: self.batch_size], pending.vectors[: self.batch_size]
        return batches

    def _submit(self, detectors: SpaceDetectors, batch: _Pending) -> tuple[Future, list[str]]:
        """Embed the batch's texts and hand it to the detectors: the future of its verdicts, and
        its texts."""
        texts = [text for text in batch.texts if text is not None]
        embedded = iter(self.embed(texts)) if texts else iter(())
        rows = [vector if vector is not None else next(embedded) for vector in batch.vectors]
        embeddings = np.vstack(rows).astype(np.float32)
        if self.detectors_process:
            return self.detectors_process.submit(detectors.space, embeddings), texts
        verdicts: Future = Future()
        with self._testing[detectors.space]:  # in this process: one test of a space at a time
            try:
                verdicts.set_result(detectors.predict(embeddings))
            except Exception as error:
                verdicts.set_exception(error)
        return verdicts, texts

    def _record(self, space: str, results: list[DriftResult]) -> list[DriftResult]:
        self.metrics.batches.labels(space=space).inc()
        for result in results:
            self.metrics.record(result)
        return results

    def _reply(self, space: str, results: list[DriftResult]) -> dict:
        first = results[0]
        return {
            "data": first.seldon_data(),
            "meta": {
                "name": self.name,
                "detector": first.detector,
                "space": space,
                "reference": self.reference_id,
                "batch_size": first.batch_size,
                "is_drift_any": int(any(r.is_drift for r in results)),
                "detectors": {r.detector: r.seldon_data() for r in results},
            },
        }

    # --- what a verdict sets off ---------------------------------------------------------------
    def _emit(self, reply: dict, results: list[DriftResult], texts: list[str]) -> None:
        import httpx

        drifted = any(r.is_drift for r in results)
        if self.reply_url:
            from cloudevents.conversion import to_structured
            from cloudevents.http import CloudEvent

            event = CloudEvent(
                {"type": self.event_type, "source": self.event_source, "id": str(uuid.uuid4())}, reply
            )
            headers, body = to_structured(event)
            self._post(
                "reply",
                self.reply_url,
                lambda: httpx.post(self.reply_url, headers=headers, content=body, timeout=self.http_timeout),
            )
        if drifted and self.webhook_url:
            self._post(
                "webhook",
                self.webhook_url,
                lambda: httpx.post(self.webhook_url, json=reply, timeout=self.http_timeout),
            )
        if drifted and self.trigger is not None:
            self.trigger.on_drift(results, reference_id=self.reference_id, texts=texts)

    def _post(self, target: str, url: str, send: Callable[[], Any]) -> None:
        try:
            response = send()
            response.raise_for_status()
        except Exception as error:  # a receiver that is down must not stop detection
            self.metrics.emit_failures.labels(target=target).inc()
            logger.warning("could not post the drift verdict to %s (%s): %s", target, url, error)


def _json(reply: dict, status: int, headers: dict[str, str] | None = None) -> Response:
    import orjson

    # numpy scalars (a detector's score may be one) as numbers; NaN as null, where json.dumps fails.
    body = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class _AnsweredTests:
    """The tests of batches whose deliveries were answered before their verdicts: at most
    ``max_testing`` at once (``start`` waits for room), awaited by ``drain`` on shutdown."""

    def __init__(self, detector: DriftDetector) -> None:
        self.detector = detector
        self.room = asyncio.Semaphore(detector.limits.max_testing)
        self.running: set[asyncio.Task] = set()  # held here: the loop keeps only weak references

    async def start(self, filled: FilledBatches) -> None:
        await self.room.acquire()  # released when the test ends
        task = asyncio.create_task(self._test(filled))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _test(self, filled: FilledBatches) -> None:
        try:
            await run_in_threadpool(self.detector.test_after_reply, filled)
        finally:
            self.room.release()

    async def drain(self) -> None:
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)


def create_app(detector: DriftDetector) -> Callable[..., Any]:
    """The ASGI app: ``POST /`` (CloudEvents), ``GET /metrics``, ``GET /healthz``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    limits = detector.limits
    in_flight = 0  # deliveries being read or handled; only the event loop touches it
    answered = _AnsweredTests(detector)

    async def receive(request: Request) -> Response:
        nonlocal in_flight
        if in_flight >= limits.max_waiting:
            status, reply = detector.overloaded()
            return _json(reply, status, headers={"Retry-After": str(limits.retry_after_seconds)})
        in_flight += 1
        try:
            body = await read_bounded_body(request, limits.max_bytes)
            if body is None:
                status, reply = detector.body_too_large(declared_length(request))
            else:
                headers = dict(request.headers)
                # A logger's event (one request or response) parses in well under a millisecond: on
                # the loop, without two thread switches per event. A large one parses in a thread.
                if len(body) <= INLINE_PARSE_BYTES:
                    received = detector.receive(headers, body)
                else:
                    received = await run_in_threadpool(detector.receive, headers, body)
                if not isinstance(received, FilledBatches):
                    status, reply = received
                elif detector.verdict_in_reply:
                    status, reply = await run_in_threadpool(detector.test, received)
                else:
                    await answered.start(received)
                    status, reply = detector.accepted(received)
        finally:
            in_flight -= 1
        return _json(reply, status)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(detector.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        health = {"status": "ok", "reference": detector.reference_id, "spaces": sorted(detector.spaces)}
        return _json(health, 200)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        yield
        # uvicorn stops after the last reply: the batches answered before their verdicts are tested
        # and acted on (metrics, reply URL, webhook, trigger) before the process ends.
        await answered.drain()

    # Starlette, not FastAPI: three routes that read their own bodies and write their own replies.
    # FastAPI's five middlewares and its routing were about 40% of the server's time per event.
    # The events' route is taken before Starlette's router and its two middlewares too: it is the
    # only busy one, and they were another 10% of an event (an exception there is still uvicorn's 500).
    routes = Starlette(
        routes=[
            Route("/", receive, methods=["POST"]),  # reached by other methods only: their 405
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )

    async def app(scope: dict, receive_message: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            response = await receive(Request(scope, receive_message))
            await response(scope, receive_message, send)
        else:
            await routes(scope, receive_message, send)

    return app


def create_waiting_app(reason: str) -> FastAPI:
    """The detector while it has no reference: ``GET /healthz`` answers 200 with
    ``{"status": "waiting", "reason": ...}`` (ready: the loggers may post, nothing is wrong), ``POST /``
    acknowledges an event without testing it, and ``/metrics`` counts them."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

    registry = CollectorRegistry()
    skipped = Counter(
        "twinops_drift_events_skipped", "Events received before a reference existed.", registry=registry
    )
    app = FastAPI(title="twinops drift detector (waiting for a reference)", docs_url=None, redoc_url=None)

    @app.post("/")
    async def receive() -> JSONResponse:
        skipped.inc()
        return JSONResponse({"data": None, "meta": {"waiting": reason}})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "waiting", "reason": reason}

    return app


def wait_for_reference(
    reason: str, has_reference: Callable[[], bool], *, host: str, port: int, interval: float = 60.0
) -> None:
    """Serve ``create_waiting_app(reason)`` on host:port until ``has_reference()`` is true (asked
    every ``interval`` seconds; an exception counts as not yet), then stop and return."""
    import uvicorn

    config = uvicorn.Config(create_waiting_app(reason), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            try:
                if has_reference():
                    logger.warning("a drift reference exists now: fitting it")
                    server.should_exit = True
                    return
            except Exception as error:  # MLflow or MongoDB unreachable for now: ask again later
                logger.warning("still no drift reference (%s: %s)", type(error).__name__, error)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        server.run()
    finally:
        stop.set()
        poller.join(timeout=5)
