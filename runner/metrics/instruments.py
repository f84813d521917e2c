"""The supervisor's own counters, fed by its hooks: passes, the engine's op log, API
calls and events. Labels: pass kind, item kind, action, result, API method, gRPC
code, event kind; each a small fixed set."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from runner.reconcile.engine import Run
from runner.supervisor.events import Event

# a light pass takes milliseconds; a forced one or a roll, seconds
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Instruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.passes = Histogram(
            "nirunner_reconcile_pass_seconds", "Duration of reconcile passes, by kind: light "
            "(task states, then the diff), forced (everything read back), heal (after "
            "kernel events), reload, roll", ["pass"], buckets=PASS_BUCKETS,
            registry=registry)
        self.ops = Counter(
            "nirunner_reconcile_ops", "Operations the engine ran, by item kind, action and "
            "result (ok, error, skipped; undone: the inverse ops of a rollback)",
            ["kind", "action", "result"], registry=registry)
        self.api = Counter("nirunner_api_requests", "API calls, by method", ["method"],
                           registry=registry)
        self.api_errors = Counter("nirunner_api_errors", "API calls that failed, by method "
                                  "and gRPC status code", ["method", "code"],
                                  registry=registry)
        self.events = Counter("nirunner_events", "Supervisor events, by kind", ["kind"],
                              registry=registry)

    def pass_done(self, kind: str, seconds: float) -> None:
        self.passes.labels(kind).observe(seconds)

    def ran(self, run: Run) -> None:
        for d in run.done:
            result = "undone" if d.inverse else "error" if d.error else \
                "skipped" if d.skipped else "ok"
            self.ops.labels(d.op.item.KIND, str(d.op.action), result).inc()

    def event(self, ev: Event) -> None:
        self.events.labels(ev.kind).inc()

    def interceptor(self) -> grpc.ServerInterceptor:
        return _ApiCounter(self)


class _ApiCounter(grpc.ServerInterceptor):
    """Counts every call and its failures (an abort or an exception) per method."""

    def __init__(self, inst: Instruments) -> None:
        self.inst = inst

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        inst = self.inst

        def counted(behavior: Callable[..., Any], stream: bool) -> Callable[..., Any]:
            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                inst.api.labels(method).inc()
                try:
                    return behavior(request, context)
                except BaseException:
                    inst.api_errors.labels(method, _code(context)).inc()
                    raise

            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                inst.api.labels(method).inc()
                try:
                    yield from behavior(request, context)
                except BaseException:
                    inst.api_errors.labels(method, _code(context)).inc()
                    raise

            return streaming if stream else unary

        if handler.unary_unary is not None:
            return handler._replace(unary_unary=counted(handler.unary_unary, False))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=counted(handler.unary_stream, True))
        return handler


def _code(context: grpc.ServicerContext) -> str:
    code = context.code() if hasattr(context, "code") else None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
