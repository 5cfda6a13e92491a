"""Skipping an SMTP message body: the end-of-data line is found however the body ends."""

from hypothesis import given
from hypothesis import strategies as st

from proxydiag.parsers.protocols.text import Cursor


def test_skips_to_the_line_after_the_dot():
    cursor = Cursor(b"Subject: x\r\n\r\n..dot-stuffed\r\n.\r\nQUIT\r\n")
    assert cursor.skip_past_line(b".") and cursor.line() == b"QUIT"


def test_empty_body_and_lf_only_endings():
    cursor = Cursor(b".\r\nQUIT\r\n")
    assert cursor.skip_past_line(b".") and cursor.line() == b"QUIT"
    cursor = Cursor(b"body\n.\nQUIT\n")
    assert cursor.skip_past_line(b".") and cursor.line() == b"QUIT"


def test_no_end_of_data_leaves_the_cursor_at_the_end():
    cursor = Cursor(b"body without an end\r\n.. still body\r\n")
    assert not cursor.skip_past_line(b".") and cursor.at_end()


@given(st.lists(st.binary(max_size=20).filter(lambda line: b"\n" not in line and line.rstrip(b"\r") != b"."), max_size=30),
       st.sampled_from([b"\r\n", b"\n"]))
def test_agrees_with_reading_line_by_line(body_lines, ending):
    data = b"".join(line + ending for line in body_lines) + b"." + ending + b"NEXT" + ending
    fast, slow = Cursor(data), Cursor(data)
    while (line := slow.line()) is not None and line != b".":
        pass
    assert fast.skip_past_line(b".") and fast.pos == slow.pos
