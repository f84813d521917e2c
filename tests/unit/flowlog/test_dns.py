from __future__ import annotations

import pytest

from runner.flowlog import dns
from tests.unit.flowlog.messages import dns_reply


def test_reply_with_cname_and_addresses() -> None:
    r = dns.parse_reply(dns_reply("www.example.test", ["192.0.2.20", "192.0.2.21"], 30,
                                  cname="cdn.example.net"))
    assert (r.id, r.query, r.qtype, r.rcode) == (7, "www.example.test", "A", "NOERROR")
    assert r.answers[0] == dns.Answer("www.example.test", "CNAME", 30, "cdn.example.net")
    assert r.addresses() == ["192.0.2.20", "192.0.2.21"] and r.ttl() == 30


@pytest.mark.parametrize("data", [b"", b"\0" * 12, dns_reply("a.test", ["1.2.3.4"], 5)[:-3],
                                  b"\0\1\x81\x80\0\1\0\0\0\0\0\0\xc0\x0c"])
def test_bad_or_cut_replies_raise(data: bytes) -> None:
    with pytest.raises(dns.DnsError):
        dns.parse_reply(data)


def test_under_matches_the_name_and_its_subdomains_only() -> None:
    assert dns.under("example.test", "example.test")
    assert dns.under("a.b.example.test", "example.test")
    assert not dns.under("badexample.test", "example.test")
