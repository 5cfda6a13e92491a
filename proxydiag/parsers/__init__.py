"""Pure parsers: bytes or text in, a result out; no I/O, never raise."""
