from __future__ import annotations

from runner.flowlog import netlink as nl
from runner.flowlog.records import AppIndex, Recorder
from runner.net.appedge import host_set
from tests.unit.flowlog import messages as m

INDEX = AppIndex({"10.1.0.10": "plc", "10.1.0.11": "hmi"}, {"02:00:00:00:00:10": "plc"})


def recorder(**kw: object) -> Recorder:
    return Recorder("factory", lambda: INDEX, ["www.example.test"], **kw)  # type: ignore[arg-type]


def event(data: bytes) -> nl.CtEvent:
    kind, _, payload = next(nl.messages(data))
    ev = nl.ct_event(kind, payload)
    assert ev is not None
    return ev


def packet(data: bytes) -> nl.LogPacket:
    kind, _, payload = next(nl.messages(data))
    pkt = nl.log_packet(kind, payload)
    assert pkt is not None
    return pkt


def test_egress_flow_from_the_apps_side_with_its_rule() -> None:
    r = recorder(rule_labels={3: "plc egress 0"})
    [rec] = r.ct(event(m.ct_event(m.tuple_(6, "10.1.0.10", "192.0.2.20", 40000, 80),
                                  m.tuple_(6, "192.0.2.20", "198.51.100.2", 80, 40000),
                                  mark=0x43FF0003)))
    assert rec == {"type": "flow", "ni": "factory", "app": "plc", "dir": "egress",
                   "proto": "tcp", "src": "10.1.0.10", "sport": 40000, "dst": "192.0.2.20",
                   "dport": 80, "start": 1_700_000_000.0, "end": 1_700_000_002.5,
                   "verdict": "allow", "rule": "plc egress 0", "pkts_out": 10,
                   "bytes_out": 1000, "pkts_in": 8, "bytes_in": 4000}


def test_port_mapped_flow_is_ingress_with_counters_swapped() -> None:
    [rec] = recorder().ct(event(m.ct_event(
        m.tuple_(6, "198.51.100.1", "169.254.100.2", 50000, 8080),
        m.tuple_(6, "10.1.0.10", "198.51.100.1", 80, 50000))))
    assert (rec["app"], rec["dir"], rec["src"], rec["dst"], rec["dport"]) == (
        "plc", "ingress", "198.51.100.1", "10.1.0.10", 80)
    assert (rec["bytes_out"], rec["bytes_in"]) == (4000, 1000)


def test_the_nis_own_flows_and_unwanted_starts_are_not_recorded() -> None:
    own = m.ct_event(m.tuple_(17, "198.51.100.2", "192.0.2.53", 5353, 53),
                     m.tuple_(17, "192.0.2.53", "198.51.100.2", 53, 5353))
    assert recorder().ct(event(own)) == []
    start = m.ct_event(m.tuple_(6, "10.1.0.10", "192.0.2.20", 1, 80),
                       m.tuple_(6, "192.0.2.20", "198.51.100.2", 80, 1), end=False)
    assert recorder().ct(event(start)) == []
    assert recorder(starts=True).ct(event(start))[0]["type"] == "start"


def test_drops_are_aggregated_per_five_tuple_until_quiet() -> None:
    r = recorder(drop_idle=5.0)
    udp = m.ipv4_udp("10.1.0.10", "192.0.2.9", 1234, 9, b"x" * 100)
    for i in range(3):
        assert r.log(packet(m.log_packet("acl plc egress 1 ", udp, when=100.0 + i)), 103.0) == (
            [], "")
    arp = bytes(14) + bytes([10, 1, 0, 10]) + bytes(6) + bytes([10, 1, 0, 1])
    r.log(packet(m.log_packet("edge arp ", arp, ethertype=0x0806, family=7,
                              mac="02:00:00:00:00:10", when=103.0)), 103.0)
    assert r.flush(104.0) == []
    recs = sorted(r.flush(108.0), key=lambda x: x["reason"])
    assert [(x["reason"], x["app"], x["proto"], x["pkts_logged"]) for x in recs] == [
        ("acl plc egress 1", "plc", "udp", 3), ("edge arp", "plc", "arp", 1)]
    assert recs[0]["bytes_logged"] == 3 * 128 and recs[0]["end"] - recs[0]["start"] == 2
    assert recs[1]["src"] == "10.1.0.10" and recs[1]["dst"] == "10.1.0.1"
    assert r.flush(200.0, everything=True) == []


def test_dns_reply_is_recorded_and_refreshes_the_hosts_set() -> None:
    r = recorder(host_grace=5)
    reply = m.dns_reply("www.example.test", ["192.0.2.20"], 30)
    pkt = packet(m.log_packet("dns ", m.ipv4_udp("10.1.0.1", "10.1.0.11", 53, 40000, reply)))
    recs, text = r.log(pkt, now=1000.0)
    assert recs[0]["app"] == "hmi" and recs[0]["query"] == "www.example.test"
    assert recs[0]["answers"] == [{"name": "www.example.test", "type": "A", "ttl": 30,
                                   "data": "192.0.2.20"}]
    assert text == (f"add element inet acl {host_set('www.example.test')} "
                    "{ 192.0.2.20 timeout 35s }\n")
    # a cached answer later, with less TTL left, never shortens what was granted
    later = m.dns_reply("www.example.test", ["192.0.2.20"], 2)
    _, text = r.log(packet(m.log_packet("dns ", m.ipv4_udp(
        "10.1.0.1", "10.1.0.11", 53, 40001, later))), now=1010.0)
    assert "timeout 25s" in text
    other = m.dns_reply("api.other.test", ["192.0.2.30"], 30)
    _, text = r.log(packet(m.log_packet("dns ", m.ipv4_udp(
        "10.1.0.1", "10.1.0.11", 53, 40002, other))), now=1010.0)
    assert text == ""


def test_garbage_in_a_dns_log_is_ignored() -> None:
    pkt = packet(m.log_packet("dns ", m.ipv4_udp("10.1.0.1", "10.1.0.11", 53, 1, b"junk")))
    assert recorder().log(pkt, 1.0) == ([], "")
