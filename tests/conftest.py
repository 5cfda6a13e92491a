"""Test-wide settings. Property tests have no deadline (CI machines are slower and busier
than a developer's). They explore afresh on every run, under CI too (a fixed,
derandomised set would test the same few inputs forever); under CI the run's seed is
printed in the header, so a failure is reproduced with --hypothesis-seed=SEED (or
PROXYDIAG_HYPOTHESIS_SEED=SEED)."""

import os
import random
import subprocess

import hypothesis.core
import pytest
from hypothesis import settings

settings.register_profile("local", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=False, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")

_SEED: list[int] = []


def pytest_configure(config):
    handed = getattr(config, "workerinput", {}).get("proxydiag_hypothesis_seed")  # a pytest-xdist worker
    if handed is not None:
        hypothesis.core.global_force_seed = handed
        _SEED.append(handed)
        return
    given = config.getoption("hypothesis_seed", None)
    if given is not None:
        _SEED.append(int(given))
    elif os.environ.get("CI") == "true" or os.environ.get("PROXYDIAG_HYPOTHESIS_SEED"):
        seed = int(os.environ.get("PROXYDIAG_HYPOTHESIS_SEED") or random.randrange(2**32))
        hypothesis.core.global_force_seed = seed
        _SEED.append(seed)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Every xdist worker explores with the seed the header prints."""
    if _SEED:
        node.workerinput["proxydiag_hypothesis_seed"] = _SEED[0]


def pytest_report_header(config):
    if _SEED:
        return f"hypothesis seed: {_SEED[0]} (reproduce with --hypothesis-seed={_SEED[0]})"
    return None


# --- tiers -------------------------------------------------------------------------------
# `python3 -m pytest` runs the fast tier (pyproject's addopts deselect the others); tests/run.sh
# runs every tier. A test outside the `lab` tier that starts one of the programs below (the
# real daemons, clients and capture tools tests/run.sh installs from Debian's packages) fails:
# the fast tier must pass on a machine that has only the Python packages.
LAB_PROGRAMS = frozenset({
    "haproxy", "nginx", "stunnel", "stunnel4", "postfix", "postconf", "dovecot", "doveadm", "tcpdump", "tshark",
    "dumpcap", "editcap", "swaks", "curl", "openssl", "socat", "caddy", "prometheus", "promtool", "chromium", "systemd-analyze",
})
_current: dict[str, pytest.Item | None] = {"item": None}


def _program_of(args) -> str:
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    first = os.fsdecode(argv[0]) if argv else ""
    return os.path.basename(first.split()[0] if isinstance(args, str) and " " in first else first)


def _guarded_popen_init(original):
    def init(self, args, *rest, **options):
        item = _current["item"]
        program = _program_of(args)
        if item is not None and program in LAB_PROGRAMS and item.get_closest_marker("lab") is None:
            raise RuntimeError(f"{item.nodeid} starts {program}: mark it @pytest.mark.lab (the fast tier runs "
                               "without the Debian packages)")
        original(self, args, *rest, **options)
    return init


subprocess.Popen.__init__ = _guarded_popen_init(subprocess.Popen.__init__)  # type: ignore[method-assign]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _current["item"] = item


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    _current["item"] = None  # finalizers of a module's lab fixtures run in its last test's teardown


# --- JSON documents ------------------------------------------------------------------------
# Every JSON document proxydiag writes during the tests (analyze, check, logs, probe and
# sniff's reports, sniff's jsonl events), in this process or in a child, is validated
# against proxydiag/report/schema.json as it is written: a violation ends proxydiag with
# exit code 3, the document left unfinished (proxydiag/report/schema.py). Children given
# an environment of their own get the switch too.
VALIDATE_JSON = "PROXYDIAG_VALIDATE_JSON"
os.environ.setdefault(VALIDATE_JSON, "1")  # PROXYDIAG_VALIDATE_JSON= (empty) turns it off, to time a run without it


def _validating_popen_init(original):
    def init(self, args, *rest, **options):
        env = options.get("env")
        if env is not None and VALIDATE_JSON not in env and VALIDATE_JSON in os.environ:
            options["env"] = {**env, VALIDATE_JSON: os.environ[VALIDATE_JSON]}
        original(self, args, *rest, **options)
    return init


subprocess.Popen.__init__ = _validating_popen_init(subprocess.Popen.__init__)  # type: ignore[method-assign]
