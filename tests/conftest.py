"""Test-wide settings. Property tests have no deadline (CI machines are slower and busier
than a developer's). They explore afresh on every run, under CI too (a fixed,
derandomised set would test the same few inputs forever); under CI the run's seed is
printed in the header, so a failure is reproduced with --hypothesis-seed=SEED (or
PROXYDIAG_HYPOTHESIS_SEED=SEED)."""

import os
import random

import hypothesis.core
from hypothesis import settings

settings.register_profile("local", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=False, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")

_SEED: list[int] = []


def pytest_configure(config):
    given = config.getoption("hypothesis_seed", None)
    if given is not None:
        _SEED.append(int(given))
    elif os.environ.get("CI") == "true" or os.environ.get("PROXYDIAG_HYPOTHESIS_SEED"):
        seed = int(os.environ.get("PROXYDIAG_HYPOTHESIS_SEED") or random.randrange(2**32))
        hypothesis.core.global_force_seed = seed
        _SEED.append(seed)


def pytest_report_header(config):
    if _SEED:
        return f"hypothesis seed: {_SEED[0]} (reproduce with --hypothesis-seed={_SEED[0]})"
    return None
