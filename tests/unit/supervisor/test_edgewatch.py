"""The edge thread follows lease files with inotify (real, in tmp_path) and applies element
changes (nft and the kernel's tables faked): adds at once, deletes once the file is quiet."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.drivers.edge import AclView, EdgeView
from runner.reconcile.build_edge import Follow
from runner.supervisor import edgewatch

PLC = "02:00:00:00:00:10"


class FakeNft:
    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []
        self.cond = threading.Condition()

    def apply(self, text: str, netns: str | None = None, what: str = "") -> None:
        with self.cond:
            self.applied.append((netns or "", text))
            self.cond.notify_all()

    def wait(self, want: str, timeout: float = 5.0) -> float:
        """Seconds until some applied text contains `want`."""
        t0 = time.monotonic()
        with self.cond:
            ok = self.cond.wait_for(lambda: any(want in t for _, t in self.applied), timeout)
        assert ok, f"{want!r} never applied: {self.applied}"
        return time.monotonic() - t0


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[edgewatch.EdgeWatch, FakeNft]]:
    fake = FakeNft()
    monkeypatch.setattr(edgewatch.nft, "apply", fake.apply)
    monkeypatch.setattr(edgewatch.edge_driver, "read_edge", lambda netns: EdgeView())
    monkeypatch.setattr(edgewatch.edge_driver, "read_acl", lambda netns: AclView())
    w = edgewatch.EdgeWatch()
    yield w, fake
    w.stop()


def spec(tmp_path: Path, **kw: object) -> Follow:
    base: dict[str, object] = dict(
        ni="n", netns="nr-n", inode=1, lease_path=str(tmp_path / "dnsmasq.leases"),
        acl_apps=((PLC, "plc"),), listen=False, log_path="", max_bytes=1 << 20, keep=1,
        apps=(("plc", PLC, ()),), hosts=(), labels=())
    base.update(kw)
    return Follow(**base)  # type: ignore[arg-type]


def test_leases_are_followed_live(watch: tuple[edgewatch.EdgeWatch, FakeNft],
                                  tmp_path: Path) -> None:
    w, fake = watch
    leases = tmp_path / "dnsmasq.leases"
    w.follow({"n": spec(tmp_path)})
    assert w.wait(5)
    assert w.stats("n") == {"leasesFollowed": True}
    end = int(time.time()) + 600
    written = time.monotonic()
    with open(leases, "w") as f:  # dnsmasq rewrites its file in place
        f.write(f"{end} {PLC} 10.1.0.100 plc 01:{PLC}\n")
    fake.wait("add element bridge edge mac_ip { 02:00:00:00:00:10 . 10.1.0.100 timeout")
    took = time.monotonic() - written
    assert "jump in_plc" in fake.applied[-1][1] and fake.applied[-1][0] == "nr-n"
    print(f"a new lease applied {took * 1000:.1f} ms after the file was written (nft faked)")
    assert took < 1.0
    with open(leases, "w") as f:
        f.write("")
    fake.wait("delete element bridge edge mac_ip { 02:00:00:00:00:10 . 10.1.0.100 }")
    # a caller that cannot wait for inotify (the CNI attach, say): applied in its thread
    before = len(fake.applied)
    leases.write_text(f"{end} {PLC} 10.1.0.102 plc *\n")
    assert w.sync_leases("n")
    assert any("10.1.0.102 timeout" in t for _, t in fake.applied[before:])
    assert not w.sync_leases("other")
    w.follow({})  # and no more
    assert w.wait(5) and w.stats("n") == {}
    before = len(fake.applied)
    leases.write_text(f"{end} {PLC} 10.1.0.101 plc *\n")
    time.sleep(0.3)
    assert len(fake.applied) == before


def test_a_follower_that_cannot_start_is_retried(watch: tuple[edgewatch.EdgeWatch, FakeNft],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    w, _ = watch
    monkeypatch.setattr(edgewatch, "RETRY", 0.2)
    state = tmp_path / "state"
    w.follow({"n": spec(tmp_path, lease_path=str(state / "dnsmasq.leases"))})
    assert not w.wait(0.5)  # its state dir is not there (yet): tried again later
    assert "No such file" in w.stats("n")["followError"]
    assert not w.stats("n")["leasesFollowed"]
    state.mkdir()
    assert w.wait(5)
    assert w.stats("n") == {"leasesFollowed": True}
