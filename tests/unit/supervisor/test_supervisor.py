"""The supervisor on fake configurators: what apply, dry run, delete and passes report.

No root, no kernel, no containerd: the configurators record calls (and fail when
told to), facts are the sample site's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.configurators.task import ShimGroups
from runner.errors import NirunnerError
from runner.model.types import SupervisorConfig, Uplink
from runner.supervisor.core import Document, Supervisor
from tests.unit.plan.sample import FACTS
from tests.unit.reconcile.test_reconcile import Fakes


def manifest(name: str, port: int = 8080, subnet: str = "10.1.0.0/24") -> str:
    return f"""apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {{name: {name}}}
spec:
  type: local
  uplink: eth0
  subnet: {subnet}
  dhcp: {{reservations: [{{name: web, mac: "02:00:00:00:00:10", ip: {subnet[:-4]}10}}]}}
  portMaps: [{{name: web, protocol: tcp, uplinkPort: {port}, target: web, targetPort: 80}}]
"""


class FakeTasks:
    def __init__(self) -> None:
        self.running: dict[str, Any] = {}

    def observe(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def sup(tmp_path: Path) -> tuple[Supervisor, Fakes]:
    fakes = Fakes()
    confs = fakes.configurators()
    confs["task"].observe = lambda: {}  # type: ignore[attr-defined]
    confs["task"].groups = ShimGroups(10)  # type: ignore[attr-defined]
    config = SupervisorConfig(state_dir=str(tmp_path / "state"),
                              uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))
    s = Supervisor(config, client=None, confs=confs, read_facts=lambda: FACTS)  # type: ignore[arg-type]
    return s, fakes


def apply(s: Supervisor, *texts: str, dry_run: bool = False) -> Any:
    return s.apply([Document(f"m{i}.yaml", t) for i, t in enumerate(texts)], dry_run=dry_run)


def test_apply_then_the_same_apply_writes_nothing(sup: tuple[Supervisor, Fakes]) -> None:
    s, fakes = sup
    first = apply(s, manifest("site"))
    assert [r.line() for r in first.results] == ["site: created"]
    assert "+ netns nr-site" in first.lines and first.writes == len(fakes.calls)
    fakes.calls.clear()
    again = apply(s, manifest("site"))
    assert again.writes == 0 and fakes.calls == []
    assert again.lines == () and [r.line() for r in again.results] == ["site: unchanged"]
    assert apply(s, manifest("site"), dry_run=True).lines == ()


def test_port_map_change_is_reported_and_an_event(sup: tuple[Supervisor, Fakes]) -> None:
    s, fakes = sup
    apply(s, manifest("site"))
    dry = apply(s, manifest("site", port=8090), dry_run=True)
    assert dry.lines == ("~ nft table inet ni in nr-site: port map web 8080 -> 8090",
                         "~ nft table inet nirunner: port map site/web 8080 -> 8090")
    fakes.calls.clear()
    done = apply(s, manifest("site", port=8090))
    assert done.lines == dry.lines  # the dry run said exactly what ran
    assert fakes.calls == [("modify", "nft:device/inet nirunner"),  # the device's first
                           ("modify", "nft:nr-site/inet ni")]
    assert [r.line() for r in done.results] == ["site: updated (port maps)"]
    ev = s.events.since(0)[-1]
    assert (ev.kind, ev.ni, ev.message) == ("ni.updated", "site", "port maps")


def test_a_failed_apply_is_undone_and_the_desired_state_kept(
        sup: tuple[Supervisor, Fakes], tmp_path: Path) -> None:
    s, fakes = sup
    apply(s, manifest("site"))
    before = s.store.path.read_bytes()
    current = dict(s.current)
    fakes.fail = {("create", "bridge:nr-lab/br0")}
    with pytest.raises(NirunnerError, match="bridge br0 in nr-lab.*No space left"):
        apply(s, manifest("lab", port=9090, subnet="10.2.0.0/24"))
    assert s.store.path.read_bytes() == before
    assert "lab" not in s.desired.nis and s.current == current
    made = [i for what, i in fakes.calls if what == "create" and "lab" in i]
    undone = [i for what, i in fakes.calls if what == "delete" and "lab" in i]
    assert undone == list(reversed(made[:-1]))  # all but the failed one, in reverse
    assert s.events.since(0)[-1].kind == "apply.rolledback"


def test_a_state_dir_that_cannot_be_written_refuses_the_apply(
        sup: tuple[Supervisor, Fakes], monkeypatch: pytest.MonkeyPatch) -> None:
    s, fakes = sup

    def full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(s.store, "save", full)
    with pytest.raises(NirunnerError, match="save the desired state .*No space left"):
        apply(s, manifest("site"))
    assert fakes.calls == [] and s.desired.nis == {}


def test_delete_reports_the_reverse_ops(sup: tuple[Supervisor, Fakes]) -> None:
    s, fakes = sup
    apply(s, manifest("site"))
    fakes.calls.clear()
    report = s.delete(["site"])
    assert [r.line() for r in report.results] == ["site: deleted"]
    assert report.lines[0] == "- task ni-site"
    assert ("delete", "netns:nr-site") in fakes.calls
    assert ("delete", "bridge:nr-site/br0") not in fakes.calls  # went with its netns
    # its task was told to stop before any op ran: it exits while the ops wait
    assert fakes.calls[0] == ("signal", "task:ni-site")
    assert s.events.since(0)[-1].kind == "ni.deleted"
    assert s.reconcile() == []  # nothing left to do, nothing left to report


def test_a_task_exit_restarts_it_after_the_backoff(sup: tuple[Supervisor, Fakes]) -> None:
    from runner.containerd.tasks import TaskExit

    s, fakes = sup
    apply(s, manifest("site"))
    task = s.current["task:ni-site"]
    s.on_task_exit(TaskExit("ni-site", task.pid, 137, ""))  # type: ignore[attr-defined]
    fakes.calls.clear()
    s.reconcile()  # within the backoff: held
    assert fakes.calls == []
    s.health["site"].next_try = 0.001  # due
    s.reconcile()
    assert fakes.calls == [("modify", "task:ni-site")]
    assert [e.kind for e in s.events.since(0)][-2:] == ["task.exited", "task.restarted"]
