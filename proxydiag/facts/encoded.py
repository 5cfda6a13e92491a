"""Text already encoded as JSON: a connection's document written as it was judged (the
store keeps it so), passed through the report's JSON writer as it is."""


class Encoded(str):
    """A value already encoded by `report.json.encode`."""
