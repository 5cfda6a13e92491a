"""What users paste into `proxydiag decode`: hex, hexdumps, v1 lines."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.parsers.userinput import InputError, bytes_from_input, bytes_from_text


def xxd(data: bytes) -> str:
    rows = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        groups = " ".join(row[i : i + 2].hex() for i in range(0, len(row), 2))
        rows.append(f"{offset:08x}: {groups:<40}  " + "".join(chr(b) if 32 <= b < 127 else "." for b in row))
    return "\n".join(rows)


def hexdump_c(data: bytes) -> str:
    rows = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        left = " ".join(f"{b:02x}" for b in row[:8])
        right = " ".join(f"{b:02x}" for b in row[8:])
        rows.append(f"{offset:08x}  {left:<23}  {right:<23}  |" + "".join(chr(b) if 32 <= b < 127 else "." for b in row) + "|")
    rows.append(f"{len(data):08x}")
    return "\n".join(rows)


def wireshark(data: bytes) -> str:
    return "\n".join(
        f"{offset:04x}   " + " ".join(f"{b:02x}" for b in data[offset : offset + 16]) + "   ................"
        for offset in range(0, len(data), 16)
    )


@given(st.binary(min_size=1, max_size=200))
def test_every_hexdump_style_round_trips(data):
    for render in (xxd, hexdump_c, wireshark, bytes.hex, lambda d: " ".join(f"0x{b:02x}" for b in d)):
        assert bytes_from_text(render(data))[0] == data, render


@given(st.text(max_size=300))
def test_arbitrary_text_is_bytes_or_input_error(text):
    try:
        data, notes = bytes_from_text(text)
    except InputError:
        return
    assert isinstance(data, bytes) and notes


@given(st.binary(max_size=300))
def test_arbitrary_stdin_is_bytes_or_input_error(raw):
    try:
        bytes_from_input(raw)
    except InputError:
        pass


def test_v1_line_from_a_log_gets_its_crlf_back():
    data, notes = bytes_from_text("PROXY TCP6 2001:db8::1 2001:db8::2 40000 993\n")
    assert data == b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 993\r\n" and "CRLF added" in notes[0]
    assert bytes_from_text(r"PROXY UNKNOWN\r\n")[0] == b"PROXY UNKNOWN\r\n"


@pytest.mark.parametrize("text", ["", "   \n", "zz", "not hex at all"])
def test_nonsense_is_an_input_error(text):
    with pytest.raises(InputError):
        bytes_from_text(text)
