"""`nirunner flows`: records as a person reads them."""

from __future__ import annotations

from runner.cli.flow_commands import line


def test_a_flow_a_drop_and_a_dns_answer() -> None:
    flow = {"type": "flow", "verdict": "allow", "app": "plc", "dir": "egress", "proto": "tcp",
            "src": "10.1.0.10", "sport": 40000, "dst": "192.0.2.10", "dport": 80,
            "start": 100.0, "end": 101.5, "bytes_out": 2048, "pkts_out": 3, "bytes_in": 100,
            "pkts_in": 2, "rule": "plc egress 0"}
    text = line(flow)
    assert text.endswith("plc        egress  tcp 10.1.0.10:40000 -> 192.0.2.10:80  out "
                         "2.0 KiB/3 pkts, in 100 B/2 pkts, 1.5s (plc egress 0)")
    drop = {"type": "flow", "verdict": "drop", "app": None, "mac": "02:00:00:00:00:66",
            "reason": "edge ip", "proto": "icmp", "src": "10.1.0.11", "sport": 8,
            "dst": "10.1.0.1", "dport": 0, "start": 1.0, "end": 2.0, "pkts_logged": 2}
    assert line(drop).endswith("02:00:00:00:00:66 drop  icmp 10.1.0.11 -> 10.1.0.1  edge ip, "
                               "2 pkts logged")
    dns = {"type": "dns", "app": "plc", "client": "10.1.0.10", "time": 5.0,
           "query": "www.example.test", "qtype": "A", "rcode": "NOERROR",
           "answers": [{"name": "www.example.test", "type": "A", "ttl": 2,
                        "data": "192.0.2.10"}]}
    assert line(dns).endswith("plc        dns   www.example.test A NOERROR: 192.0.2.10 "
                              "(A, ttl 2)")
    assert "no answer" in line({**dns, "answers": []})
