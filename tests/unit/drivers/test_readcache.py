from __future__ import annotations

from runner.drivers import readcache


def test_reads_are_shared_only_inside_a_batch() -> None:
    calls: list[str] = []

    def dump() -> dict[str, int]:
        calls.append("dump")
        return {"nr0": 1}

    assert not readcache.active()
    readcache.cached("links", dump)
    readcache.cached("links", dump)
    assert calls == ["dump", "dump"]  # outside: fresh each time
    with readcache.batch():
        assert readcache.active()
        with readcache.batch():  # nested: the same batch
            assert readcache.cached("links", dump) == {"nr0": 1}
        assert readcache.cached("links", dump) == {"nr0": 1}
    assert calls == ["dump"] * 3 and not readcache.active()
