"""Every input path refuses what is not small UTF-8 YAML with a problem, never a traceback."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from runner.model.config import load_config, parse_config
from runner.model.errors import ConfigError, ManifestError, Problem
from runner.model.manifest import MAX_BYTES, parse_documents, parse_paths
from runner.model.reader import decode, read_paths

GOOD = ("apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {name: caf}\n"
        "spec: {type: local, subnet: 10.1.0.0/24}\n")


def text_problems(text: str) -> list[Problem]:
    try:
        parse_documents(text, "in.yaml")
    except ManifestError as e:
        return e.problems
    return []


def file_problems(tmp_path: Path, data: bytes) -> list[Problem]:
    f = tmp_path / "in.yaml"
    f.write_bytes(data)
    try:
        parse_paths([str(f)])
    except ManifestError as e:
        assert all(p.source == str(f) for p in e.problems)
        return e.problems
    return []


@pytest.mark.parametrize(("char", "name"), [
    ("\x00", "U+0000"), ("\x01", "U+0001"), ("\x08", "U+0008"), ("\x0b", "U+000B"),
    ("\x1b", "U+001B"), ("\x7f", "U+007F"), ("\x9b", "U+009B"), ("\ufffe", "U+FFFE"),
    ("\uffff", "U+FFFF"), ("\ud800", "U+D800"),
])
def test_control_characters_are_a_problem_with_line_column_and_offset(
        char: str, name: str) -> None:
    text = GOOD.replace("name: caf}", f"name: caf{char}}}")
    (p,) = text_problems(text)
    offset = len(GOOD.split("caf")[0].encode()) + 3
    assert p.message.startswith(f"control character {name} at column 21 (byte offset "
                                f"{offset}) is not allowed in YAML")
    assert (p.source, p.line, p.path) == ("in.yaml", 3, "")


def test_allowed_whitespace_and_unicode_pass() -> None:
    assert text_problems(GOOD.replace("caf}", "caf}  # \tcafé \U0001f600\r")) == []


def test_latin1_is_not_utf8_with_the_byte_offset(tmp_path: Path) -> None:
    data = GOOD.replace("# x", "").encode() + "# café\n".encode("latin-1")
    (p,) = file_problems(tmp_path, data)
    assert p.message == (f"is not UTF-8: byte 0xe9 at offset {len(data) - 2} cannot be decoded "
                         f"(invalid continuation byte); save it as UTF-8")
    assert p.line == 5


@pytest.mark.parametrize(("encoding", "says"), [
    ("utf-16", "is UTF-16 (it starts with a byte order mark)"),
    ("utf-16-le", "looks like UTF-16 without a byte order mark (a NUL byte at every other "
                  "offset from 1)"),
    ("utf-16-be", "looks like UTF-16 without a byte order mark (a NUL byte at every other "
                  "offset from 0)"),
    ("utf-32", "is UTF-32 (it starts with a byte order mark)"),
])
def test_utf16_and_utf32_are_named(tmp_path: Path, encoding: str, says: str) -> None:
    (p,) = file_problems(tmp_path, GOOD.encode(encoding))
    assert p.message.startswith(says) and p.message.endswith("save it as UTF-8")


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    assert file_problems(tmp_path, b"\xef\xbb\xbf" + GOOD.encode()) == []


def test_size_limit_for_files_stdin_and_texts(tmp_path: Path) -> None:
    big = GOOD + "#" * MAX_BYTES + "\n"
    (p,) = file_problems(tmp_path, big.encode())
    assert p.message == f"is larger than {MAX_BYTES} bytes"
    texts, found = read_paths(["-"], io.BytesIO(big.encode()))
    assert texts == [] and [(x.source, x.message) for x in found] == [
        ("<stdin>", f"is larger than {MAX_BYTES} bytes")]
    two_mib = GOOD + "#" * (2 << 20) + "\n"
    (p,) = text_problems(two_mib)
    assert p.message == f"is larger than {MAX_BYTES} bytes ({len(two_mib)} bytes)"
    # counted in UTF-8 bytes, not characters
    (p,) = text_problems(GOOD + "#" + "é" * (MAX_BYTES // 2) + "\n")
    assert p.message.startswith(f"is larger than {MAX_BYTES} bytes")


def test_stdin_is_read_once_and_named(tmp_path: Path) -> None:
    texts, found = read_paths(["-"], io.BytesIO(GOOD.encode()))
    assert [(t.source, t.text) for t in texts] == [("<stdin>", GOOD)] and found == []
    (loc,) = parse_paths(["-"], io.BytesIO(GOOD.encode()))
    assert (loc.source, loc.ni.name) == ("<stdin>", "caf")
    _, found = read_paths(["-", "-"], io.BytesIO(GOOD.encode()))
    assert [str(p) for p in found] == ["<stdin>: is given more than once"]
    _, found = read_paths(["-"], io.BytesIO(b"a: \x1b\n"))
    assert found[0].source == "<stdin>" and found[0].line == 1


def test_a_text_without_a_name_is_still_named() -> None:
    with pytest.raises(ManifestError) as err:
        parse_documents("a: [")
    assert err.value.problems[0].source == "<input>"


@pytest.mark.parametrize(("value", "says"), [
    ("2024-13-45", "has a value that cannot be read as timestamp: '2024-13-45' ('month must"),
    ("1" * 5000, "has a value that cannot be read as int"),  # int() refuses > 4300 digits
    ("!!python/object:os.system x", "uses an unsupported tag"),
    ("!!timestamp hello", "has a value that cannot be read as timestamp: 'hello'"),
    ("!!bool maybe", "has a value that cannot be read as bool: 'maybe'"),
    ("!!int 0b102", "cannot be read as int: '0b102'"),
    ("!!binary aGk=", "uses an unsupported tag 'tag:yaml.org,2002:binary'"),
    ("!!set x", "uses an unsupported tag 'tag:yaml.org,2002:set'"),
])
def test_values_yaml_cannot_build_are_problems(value: str, says: str) -> None:
    found = text_problems(GOOD.replace("{name: caf}", f"{{name: caf, x: {value}}}"))
    assert any(says in p.message and p.line == 3 for p in found), found


def test_huge_base60_integer_is_described_not_printed() -> None:
    found = text_problems(GOOD.replace("10.1.0.0/24}", "10.1.0.0/24, mtu: " +
                                       ":".join(["59"] * 3000) + "}"))
    assert any("spec.mtu must be" in str(p) or "bits" in p.message for p in found), found


def test_deep_nesting_and_bombs_are_bounded() -> None:
    t = time.monotonic()
    for text in ("[" * 200_000 + "]" * 200_000, "{a: " * 100_000 + "1" + "}" * 100_000,
                 "- " * 50_000 + "x\n"):
        (p,) = text_problems(text)
        assert "nested" in p.message, p
    bomb = "a: &a [" + ",".join(["x"] * 50) + "]\n"
    for i in range(1, 8):
        bomb += f"b{i}: &b{i} [" + ",".join([f"*{'a' if i == 1 else f'b{i - 1}'}"] * 50) + "]\n"
    (p,) = text_problems(bomb)
    assert "more than 20000 values (alias bomb?)" in p.message
    assert time.monotonic() - t < 30


def test_wide_documents_and_many_documents_stop_early() -> None:
    t = time.monotonic()
    (p,) = text_problems("a: [" + ",".join(["1"] * 500_000) + "]\n")  # 1 MiB
    assert p.message == "document has more than 40000 keys and values" and p.line == 1
    (p,) = text_problems("---\n" * 200_000)
    assert p.message == "holds more than 10000 YAML documents"
    assert time.monotonic() - t < 15  # each was 7-18 s when the composer ran to the end


def test_config_goes_through_the_same_reader(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_bytes("stateDir: /var/lib/caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"c.yaml: is not UTF-8: byte 0xe9 at offset 22"):
        load_config(str(f))
    with pytest.raises(ConfigError, match=r"^c.yaml: control character U\+0000"):
        parse_config("image: a\x00\n", "c.yaml")
    with pytest.raises(ConfigError, match="is larger than"):
        parse_config("#" * (MAX_BYTES + 1), "c.yaml")
    f.write_bytes(b"x" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="is larger than"):
        load_config(str(f))


def test_decode_directly() -> None:
    assert decode(b"a: 1\n", "x").text == "a: 1\n"  # type: ignore[union-attr]


def test_parse_many_reports_every_document() -> None:
    from runner.model.manifest import parse_many

    (loc,) = parse_many([("a.yaml", GOOD)])
    assert loc.source == "a.yaml"
    with pytest.raises(ManifestError) as err:
        parse_many([("a.yaml", "a: \x01\n"), ("b.yaml", GOOD + "x: [\n"), (None, "- 1\n")])
    assert [p.source for p in err.value.problems] == ["a.yaml", "b.yaml", "<input>"]
