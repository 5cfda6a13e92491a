"""Evidence from the wire: capture files, live capture, frames, TCP flows and their openings."""
