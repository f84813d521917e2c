"""Named counters survive a re-apply of their table: values read, then written back."""

from __future__ import annotations

import pytest

from runner.drivers import nft

LISTING = ('{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"counter": {"family": "inet", '
           '"name": "ni_nr3_in", "table": "nirunner", "handle": 8, "packets": 12, '
           '"bytes": 3400}}, {"counter": {"family": "inet", "name": "pm_nr3_tcp_80", '
           '"table": "nirunner", "handle": 9, "packets": 0, "bytes": 0}}]}')


def test_parse_counters() -> None:
    assert nft.parse_counters(LISTING) == {"ni_nr3_in": (12, 3400), "pm_nr3_tcp_80": (0, 0)}
    assert nft.parse_counters('{"nftables": []}') == {}
    with pytest.raises(nft.NftError, match="cannot be read"):
        nft.parse_counters("not json")


def test_keep_counters_fills_only_known_empty_declarations() -> None:
    text = ("table inet nirunner {\n\tcounter ni_nr3_in {}\n\tcounter ni_nr4_in {}\n"
            "\tchain c {\n\t\tcounter name iifname map @m\n\t}\n}\n")
    out = nft.keep_counters(text, {"ni_nr3_in": (12, 3400), "gone": (1, 1)})
    assert "\tcounter ni_nr3_in { packets 12 bytes 3400 }\n" in out
    assert "\tcounter ni_nr4_in {}\n" in out  # a new one starts at zero
    assert "counter name iifname map @m" in out
    assert nft.keep_counters(text, {}) == text

