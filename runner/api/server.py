"""The supervisor daemon: reconcile, watch task exits, serve the API on a Unix socket."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import NoReturn

import grpc

from runner import __version__
from runner.api import problems
from runner.containerd import tasks
from runner.containerd.client import Client
from runner.containerd.errors import ContainerdError, Unavailable
from runner.drivers.watch import watch_uplinks
from runner.errors import NirunnerError
from runner.model.errors import ModelError
from runner.model.types import SupervisorConfig
from runner.pb.nirunner.v1 import nirunner_pb2 as pb
from runner.pb.nirunner.v1 import nirunner_pb2_grpc as pb_grpc
from runner.supervisor.core import Document, Supervisor
from runner.supervisor.events import Event
from runner.supervisor.store import Store

log = logging.getLogger("nirunner.api")

RESYNC_EVERY = 60.0  # a light pass: tasks, and what changed since the last plan
FORCE_EVERY = 600.0  # a forced pass redoes all kernel work: heals outside tampering


def _abort(ctx: grpc.ServicerContext, e: NirunnerError) -> NoReturn:
    if isinstance(e, ModelError):  # the problems as `validate` shows them, in the trailers
        details, trailers = problems.encode(e)
        ctx.set_trailing_metadata(trailers)
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, details)
    ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
    raise e  # not reached: abort() raises; this tells type checkers so


class Servicer(pb_grpc.SupervisorServicer):
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def Version(self, request: pb.VersionRequest, context: grpc.ServicerContext
                ) -> pb.VersionResponse:
        try:
            cv = self.sup.client.version()
        except ContainerdError as e:
            cv = f"unavailable: {e}"
        return pb.VersionResponse(version=__version__, containerd_version=cv)

    def Apply(self, request: pb.ApplyRequest, context: grpc.ServicerContext) -> pb.ApplyResponse:
        docs = [Document(d.source, d.yaml) for d in request.documents]
        try:
            results = self.sup.apply(docs, dry_run=request.dry_run)
        except NirunnerError as e:
            _abort(context, e)
        return pb.ApplyResponse(changes=[pb.Change(ni=r.name, action=r.action, detail=r.detail)
                                         for r in results])

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext
               ) -> pb.DeleteResponse:
        try:
            return pb.DeleteResponse(deleted=self.sup.delete(list(request.names)))
        except NirunnerError as e:
            _abort(context, e)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext
               ) -> pb.StatusResponse:
        try:
            sts = self.sup.status(list(request.names), request.detail)
        except NirunnerError as e:
            _abort(context, e)
        return pb.StatusResponse(ni_json=[json.dumps(s, sort_keys=True) for s in sts])

    def Attach(self, request: pb.AttachRequest, context: grpc.ServicerContext
               ) -> pb.AttachResponse:
        try:
            a = self.sup.attach(request.ni, request.netns, request.ifname, request.mac,
                                request.hostname)
        except NirunnerError as e:
            _abort(context, e)
        return pb.AttachResponse(host_ifname=a.host_ifname, mac=a.mac)

    def Detach(self, request: pb.DetachRequest, context: grpc.ServicerContext
               ) -> pb.DetachResponse:
        try:
            self.sup.detach(request.ni, request.netns, request.ifname)
        except NirunnerError as e:
            _abort(context, e)
        return pb.DetachResponse()

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
                sup.events.emit("containerd.lost", "", str(e), logging.WARNING)
                lost = True
        if sup.stopping.wait(0.5):
            return


def _watch_uplinks(sup: Supervisor) -> None:
    ifaces = {u.interface for u in sup.config.uplinks}
    try:
        watch_uplinks(ifaces, lambda why: sup.request_resync(why, "uplink.changed"))
    except Exception as e:  # the supervisor goes on; it still resyncs periodically
        sup.events.emit("watch.error", "", f"uplink watch stopped: {e}", logging.ERROR)


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


def serve(config: SupervisorConfig) -> int:
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    Store(config.state_dir).load()  # a torn or corrupt state file: refuse to start, now
    client = _connect(config, stopping)
    sup = Supervisor(config, client)  # StateCorrupt propagates: refuse to start
    sup.stopping = stopping
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.stop())  # also wakes the main loop
    subs: list[tasks.TaskExits] = []
    # watch before the first reconcile, so no exit or uplink change falls in between
    threading.Thread(target=_watch_exits, args=(sup, subs), daemon=True, name="exits").start()
    threading.Thread(target=_watch_uplinks, args=(sup,), daemon=True, name="uplinks").start()
    t0 = time.monotonic()
    try:
        results = sup.reconcile(force=True)
        adopted = sum(r.action == "unchanged" for r in results)
        sup.events.emit("supervisor.started", "",
                        f"{len(sup.desired.nis)} NIs, {adopted} adopted as they were, "
                        f"in {time.monotonic() - t0:.2f}s", version=__version__)
    except NirunnerError as e:
        log.error("initial reconcile: %s", e)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_SupervisorServicer_to_server(Servicer(sup), server)
    _listen(server, config.api_socket)
    log.info("nirunner %s serving on %s (containerd %s, namespace %s)", __version__,
             config.api_socket, config.containerd_address, config.containerd_namespace)
    last_full = last_forced = time.monotonic()
    while not stopping.is_set():
        due = sup.next_due()
        timeout = RESYNC_EVERY - (time.monotonic() - last_full)
        if due is not None:
            timeout = min(timeout, max(0.0, due - time.monotonic()))
        sup.wake.wait(max(0.0, timeout))
        sup.wake.clear()
        if stopping.is_set():
            break
        sup.restart_due()
        if sup.resync.is_set() or time.monotonic() - last_full >= RESYNC_EVERY:
            sup.resync.clear()
            last_full = time.monotonic()
            force = last_full - last_forced >= FORCE_EVERY
            if force:
                last_forced = last_full
            try:
                sup.reconcile(force=force)
            except NirunnerError:
                pass  # each error is an event already; the next pass tries again
    log.info("stopping; NI tasks keep running")
    for sub in subs:
        sub.cancel()
    server.stop(grace=2).wait()
    with_path = Path(config.api_socket)
    if with_path.is_socket():
        with_path.unlink()
    client.close()
    return 0
