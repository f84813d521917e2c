"""The import-time report of the CLI: `python -X importtime` parsed."""

from __future__ import annotations

from bench.cli import children, import_times, outermost, parse_importtime

# what -X importtime prints: a module after the modules it imported, nested by indent
SAMPLE = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:       500 |        900 |     google.protobuf.internal
import time:       300 |       1200 |   google.protobuf
import time:       200 |        200 |       grpc._cython
import time:       400 |        600 |     grpc
import time:        50 |       1000 |     google.protobuf.descriptor
import time:       150 |       1800 |   runner.pb.nirunner_pb2
import time:      1000 |       3000 |   runner.api.client
import time:       700 |        700 |   yaml
import time:       100 |       5000 | runner.cli.main
some other line
"""


def test_parse() -> None:
    entries = parse_importtime(SAMPLE)
    assert len(entries) == 10
    assert entries[0].name == "_io" and entries[0].depth == 1
    assert entries[-1].name == "runner.cli.main" and entries[-1].depth == 0
    assert entries[-1].cumulative_us == 5000 and entries[-1].self_us == 100
    assert entries[3].name == "grpc._cython" and entries[3].depth == 3


def test_outermost_counts_a_package_where_it_was_first_imported() -> None:
    entries = parse_importtime(SAMPLE)
    # google.protobuf: its first import (1200, its internal module inside it) and the
    # later descriptor module (1000) under runner.pb
    assert outermost(entries, "google.protobuf") == 2200
    assert outermost(entries, "grpc") == 600
    assert outermost(entries, "runner") == 5000
    assert outermost(entries, "runner.pb") == 1800
    assert outermost(entries, "pyroute2") == 0


def test_children_of_the_main_import() -> None:
    kids = children(parse_importtime(SAMPLE), "runner.cli.main")
    assert kids == {"_io": 100, "google.protobuf": 1200, "runner.pb.nirunner_pb2": 1800,
                    "runner.api.client": 3000, "yaml": 700}


def test_import_times_in_seconds() -> None:
    t = import_times(SAMPLE, top=2)
    assert t["runner.cli.main"] == 0.005
    assert t["runner.cli.main > runner.api.client"] == 0.003
    assert t["runner.cli.main > runner.pb.nirunner_pb2"] == 0.0018
    assert "runner.cli.main > yaml" not in t  # only the top 2
    assert t["first import of yaml"] == 0.0007
