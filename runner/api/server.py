"""The supervisor daemon: reconcile, watch task exits, serve the API on a Unix socket."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc

from runner import __version__
from runner.api import problems
from runner.cni import wire
from runner.cni.grpc_backend import ERROR_KIND_KEY, STATUS_OF
from runner.containerd import tasks
from runner.containerd.client import Client
from runner.containerd.errors import ContainerdError, Unavailable
from runner.drivers.nlwatch import Watcher
from runner.errors import NirunnerError
from runner.fleet.wiring import start_source
from runner.metrics import wiring as metrics_wiring
from runner.model.errors import ModelError
from runner.model.types import SupervisorConfig
from runner.pb.nirunner.v1 import nirunner_pb2 as pb
from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc
from runner.supervisor import flows
from runner.supervisor.core import Document, Supervisor
from runner.supervisor.events import Event
from runner.supervisor.notify import Notifier, Watchdog
from runner.supervisor.reload import Reloader
from runner.supervisor.roll import Roller, pin_running
from runner.supervisor.store import Store
from runner.supervisor.workloads import WorkloadError

log = logging.getLogger("nirunner.api")
F = TypeVar("F", bound=Callable[..., Any])


def _abort(ctx: grpc.ServicerContext, e: NirunnerError) -> NoReturn:
    kind = e.kind if isinstance(e, WorkloadError) else None
    if kind is not None:  # the CNI plugin maps the kind to a CNI error code
        ctx.set_trailing_metadata(((ERROR_KIND_KEY, kind.value),))
        ctx.abort(grpc.StatusCode[STATUS_OF[kind]], str(e))
    if isinstance(e, ModelError):  # the problems as `validate` shows them, in the trailers
        details, trailers = problems.encode(e)
        ctx.set_trailing_metadata(trailers)
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, details)
    ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
    raise e  # not reached: abort() raises; this tells type checkers so


def _boundary(method: F) -> F:
    """The error boundary of a call: a refusal as its message, anything else logged once
    (with its traceback) and answered as an internal error; the server goes on."""
    @functools.wraps(method)
    def call(self: Servicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except NirunnerError as e:
            _abort(context, e)
        except Exception as e:
            log.exception("API %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL,
                          f"{method.__name__}: internal error: {type(e).__name__}: {e}")

    return call  # type: ignore[return-value]


class Servicer(pb_grpc.SupervisorServicer):
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.reloader: Reloader | None = None  # set by serve(): config reload and rolls
        self.roller: Roller | None = None

    def Version(self, request: pb.VersionRequest, context: grpc.ServicerContext
                ) -> pb.VersionResponse:
        try:
            cv = self.sup.client.version()
        except ContainerdError as e:
            cv = f"unavailable: {e}"
        return pb.VersionResponse(version=__version__, containerd_version=cv)

    @_boundary
    def Apply(self, request: pb.ApplyRequest, context: grpc.ServicerContext) -> pb.ApplyResponse:
        docs = [Document(d.source, d.yaml) for d in request.documents]
        report = self.sup.apply(docs, dry_run=request.dry_run, verbose=request.verbose)
        return pb.ApplyResponse(
            changes=[pb.Change(ni=r.name, action=r.action, detail=r.detail)
                     for r in report.results],
            ops=list(report.lines), writes=report.writes)

    @_boundary
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext
               ) -> pb.DeleteResponse:
        report = self.sup.delete(list(request.names))
        return pb.DeleteResponse(deleted=[r.name for r in report.results],
                                 ops=list(report.lines))

    @_boundary
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext
               ) -> pb.StatusResponse:
        sts = self.sup.status(list(request.names), request.detail)
        source = self.sup.source
        state = {**source.state(), "summary": source.describe()} if source else None
        return pb.StatusResponse(ni_json=[json.dumps(s, sort_keys=True) for s in sts],
                                 source_json=json.dumps(state, sort_keys=True) if state else "")

    @_boundary
    def Attach(self, request: pb.AttachRequest, context: grpc.ServicerContext
               ) -> pb.AttachResponse:
        a = self.sup.attach(request.ni, request.netns, request.ifname, request.mac,
                            request.hostname, request.app)
        return pb.AttachResponse(host_ifname=a.host_ifname, mac=a.mac)

    @_boundary
    def Detach(self, request: pb.DetachRequest, context: grpc.ServicerContext
               ) -> pb.DetachResponse:
        self.sup.detach(request.ni, request.netns, request.ifname)
        return pb.DetachResponse()

    @_boundary
    def AttachWorkload(self, request: pb.AttachWorkloadRequest, context: grpc.ServicerContext
                       ) -> pb.AttachWorkloadResponse:
        att = self.sup.workloads.attach(wire.request_of(request))
        return pb.AttachWorkloadResponse(attachment=wire.attachment_msg(att))

    @_boundary
    def DetachWorkload(self, request: pb.DetachWorkloadRequest, context: grpc.ServicerContext
                       ) -> pb.DetachWorkloadResponse:
        removed = self.sup.workloads.detach(request.ni, wire.key_of(request.key))
        return pb.DetachWorkloadResponse(removed=removed)

    @_boundary
    def CheckWorkload(self, request: pb.CheckWorkloadRequest, context: grpc.ServicerContext
                      ) -> pb.CheckWorkloadResponse:
        report = self.sup.workloads.check(request.ni, wire.key_of(request.key))
        if report.attachment is None:
            return pb.CheckWorkloadResponse(known=False)
        return pb.CheckWorkloadResponse(known=True,
                                        intended=wire.attachment_msg(report.attachment),
                                        problems=list(report.problems))

    @_boundary
    def GcWorkloads(self, request: pb.GcWorkloadsRequest, context: grpc.ServicerContext
                    ) -> pb.GcWorkloadsResponse:
        report = self.sup.workloads.gc(request.ni, request.network,
                                       [wire.key_of(k) for k in request.valid])
        return pb.GcWorkloadsResponse(removed=[wire.key_msg(k) for k in report.removed],
                                      errors=list(report.errors))

    @_boundary
    def NiReady(self, request: pb.NiReadyRequest, context: grpc.ServicerContext
                ) -> pb.NiReadyResponse:
        r = self.sup.workloads.ready(request.ni)
        return pb.NiReadyResponse(ready=r.ready, reason=r.reason, degraded=r.degraded)

    @_boundary
    def Reload(self, request: pb.ReloadRequest, context: grpc.ServicerContext
               ) -> pb.ReloadResponse:
        if self.reloader is None:
            raise NirunnerError("this supervisor cannot reload its config")
        ch, rolling = self.reloader.reload()
        return pb.ReloadResponse(changes=list(ch.lines), rolling=rolling)

    @_boundary
    def Roll(self, request: pb.RollRequest, context: grpc.ServicerContext) -> pb.RollResponse:
        if self.roller is None:
            raise NirunnerError("this supervisor cannot roll images")
        r = self.roller.roll(list(request.names) or None)
        return pb.RollResponse(
            nis=[pb.NIRoll(ni=x.ni, old_image=x.old, new_image=x.new, result=x.result,
                           downtime_seconds=x.downtime, error=x.error) for x in r.nis],
            stopped=r.stopped, pending=r.pending)

    def Events(self, request: pb.EventsRequest, context: grpc.ServicerContext
               ) -> Iterator[pb.Event]:
        def message(e: Event) -> pb.Event:
            return pb.Event(seq=e.seq, time=e.time, kind=e.kind, ni=e.ni, message=e.message,
                            level=logging.getLevelName(e.level),
                            fields_json=json.dumps(e.fields, sort_keys=True, default=str))

        if not request.follow:
            yield from (message(e) for e in self.sup.events.since(request.after))
            return
        done = threading.Event()
        context.add_callback(done.set)  # the client went away
        for e in self.sup.events.follow(request.after, done):
            if self.sup.stopping.is_set():
                return
            yield message(e)


    @_boundary
    def Flows(self, request: pb.FlowsRequest, context: grpc.ServicerContext
              ) -> Iterator[pb.FlowRecord]:
        path = flows.log_path(self.sup.desired.nis, self.sup.store, request.ni)
        done = threading.Event()
        context.add_callback(done.set)  # the client went away
        found = flows.records(path, request.app, request.last, request.follow,
                              lambda: done.is_set() or self.sup.stopping.is_set())
        return (pb.FlowRecord(json=json.dumps(r, sort_keys=True)) for r in found)


def _connect(config: SupervisorConfig, stopping: threading.Event) -> Client:
    """containerd may start after us: wait for it, saying so once."""
    said = False
    while True:
        try:
            return Client(config.containerd_address, config.containerd_namespace)
        except Unavailable as e:
            if not said:
                log.warning("%s; waiting for it", e)
                said = True
            if stopping.wait(1.0):
                raise


def _watch_exits(sup: Supervisor, subs: list[tasks.TaskExits]) -> None:
    """Task-exit events -> restarts. If containerd goes away the stream ends: wait for
    it to answer again, resubscribe, and reconcile (exits may have been missed)."""
    lost = False
    while not sup.stopping.is_set():
        try:
            sub = tasks.TaskExits(sup.client)
            subs[:] = [sub]
            if lost:
                sup.client.version()  # raises while containerd is still away
                sup.request_resync("containerd answers again", "containerd.reconnected")
                lost = False
            for ev in sub:
                sup.on_task_exit(ev)
            if sup.stopping.is_set():
                return
            raise Unavailable("event stream ended")
        except ContainerdError as e:
            if not lost:
                sup.containerd_lost(str(e))
                lost = True
        if sup.stopping.wait(0.5):
            return


def _watch(sup: Supervisor, watcher: Watcher) -> None:
    try:
        watcher.run()
    except Exception as e:  # the supervisor goes on; its forced passes still heal
        sup.events.emit("watch.error", "", f"kernel watch stopped: {e}", logging.ERROR)


def _listen(server: grpc.Server, path: str) -> None:
    sock = Path(path)
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if sock.exists() or sock.is_socket():
        sock.unlink()
    old = os.umask(0o177)  # the socket is born 0600: root only
    try:
        server.add_insecure_port(f"unix://{path}")
        server.start()
    finally:
        os.umask(old)
    os.chmod(path, 0o600)


def serve(config: SupervisorConfig, config_path: str | None = None) -> int:
    stopping = threading.Event()
    reload_asked = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    Store(config.state_dir).load()  # a torn or corrupt state file: refuse to start, now
    notifier = Notifier.from_env()  # systemd (Type=notify): READY, STATUS, WATCHDOG
    watchdog = Watchdog(notifier)
    watchdog.start()
    client = _connect(config, stopping)
    watcher = Watcher(on_drift=lambda d: None, on_uplink=lambda why: None)
    sup = Supervisor(config, client, watcher)  # StateCorrupt propagates: refuse to start
    watcher.on_drift = sup.note_drift
    watcher.on_uplink = lambda why: sup.request_resync(why, "uplink.changed")
    sup.stopping = stopping
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.stop())  # also wakes the main loop
    metrics = metrics_wiring.attach(sup)  # counts from the first pass on
    roller = Roller(sup)
    reloader = Reloader(sup, config_path, roller)
    pinned = pin_running(sup)  # tasks on another image: adopted, then rolled

    def on_sighup(*_: object) -> None:
        reload_asked.set()
        sup.wake.set()

    signal.signal(signal.SIGHUP, on_sighup)
    subs: list[tasks.TaskExits] = []
    # watch before the first reconcile, so no exit or kernel change falls in between
    watcher.watch("", None)
    watcher.prime()
    threading.Thread(target=_watch_exits, args=(sup, subs), daemon=True, name="exits").start()
    threading.Thread(target=_watch, args=(sup, watcher), daemon=True, name="watch").start()
    t0 = time.monotonic()
    status = f"{len(sup.desired.nis)} NIs"
    notifier.status(f"first reconcile: {status}")
    watchdog.busy()
    try:
        results = sup.reconcile(force=True)
        sup.on_pass("forced", time.monotonic() - t0)
        adopted = sum(r.action == "unchanged" for r in results)
        sup.events.emit("supervisor.started", "",
                        f"{len(sup.desired.nis)} NIs, {adopted} adopted as they were, "
                        f"in {time.monotonic() - t0:.2f}s", version=__version__)
    except Exception as e:  # logged; the loop's passes try again
        log.exception("initial reconcile")
        status += f"; first reconcile failed: {e}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), interceptors=(
        [metrics.instruments.interceptor()] if metrics else []))
    servicer = Servicer(sup)
    servicer.reloader, servicer.roller = reloader, roller
    pb_grpc.add_SupervisorServicer_to_server(servicer, server)
    _listen(server, config.api_socket)
    if metrics is not None:
        try:
            metrics.serve()
        except NirunnerError as e:  # the NIs are served all the same
            sup.events.emit("metrics.error", "", str(e), logging.ERROR)
    if pinned:
        roller.start(f"{len(pinned)} NIs run another image than {config.image}")
    log.info("nirunner %s serving on %s (containerd %s, namespace %s)", __version__,
             config.api_socket, config.containerd_address, config.containerd_namespace)
    # the fleet's etcd, when configured: after the local store is served (offline first)
    sup.source = start_source(config, sup)
    notifier.ready(f"serving on {config.api_socket}; {status}")  # every NI adopted or started
    while not stopping.is_set():
        watchdog.idle()
        sup.wake.wait(sup.next_wake())
        sup.wake.clear()
        if stopping.is_set():
            break
        watchdog.busy()
        if reload_asked.is_set():
            reload_asked.clear()
            try:
                reloader.reload()
            except NirunnerError as e:  # said in the event config.refused
                log.debug("reload: %s", e)
        try:
            sup.work()
        except Exception:  # logged once; the next pass tries again
            log.exception("reconcile")
    log.info("stopping; NI tasks keep running")
    notifier.stopping("stopping; NI tasks keep running")
    if sup.source is not None:
        sup.source.stop()  # its status keys stay until their lease's TTL
    watchdog.stop()
    watcher.stop()
    if metrics is not None:
        metrics.stop()
    if sup.edge is not None:
        sup.edge.stop()  # the flow logs' last records written
    for sub in subs:
        sub.cancel()
    server.stop(grace=2).wait()
    with_path = Path(config.api_socket)
    if with_path.is_socket():
        with_path.unlink()
    client.close()
    return 0
