"""Test-wide settings. Property tests have no deadline (CI machines are slower and busier
than a developer's), and under CI they run a fixed, reproducible set of examples so that a
submission is judged on the same inputs every time; locally they explore afresh."""

import os

from hypothesis import settings

settings.register_profile("local", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")
