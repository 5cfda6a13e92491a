"""Run one fuzz target under atheris (coverage-guided, libFuzzer):

    python3 tests/fuzz/fuzz.py TARGET [libFuzzer options, e.g. -atheris_runs=1000000]

The corpus starts from captures/ (tests/fuzz/seeds.py) in tests/fuzz/corpus/TARGET;
crashes are written to tests/fuzz/crashes/TARGET/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

# What a target imports when it runs, not when targets.py is imported: instrumented only if
# imported here (the logs and probe_replies campaigns before session 7 ran unguided by their
# readers). The report target is guided by the analysis' coverage (flows, rules,
# correlation); the renderers, straight-line formatting, stay uninstrumented everywhere:
# most of the cost, no guidance.
GUIDED_BY = {
    "report": ["proxydiag.pipeline.analysis", "proxydiag.capture.flows"],
    "logs": ["proxydiag.logs", "proxydiag.logs.event", "proxydiag.logs.haproxy", "proxydiag.logs.masking",
             "proxydiag.logs.nginx", "proxydiag.logs.reader", "proxydiag.logs.stalwart", "proxydiag.pipeline.logs",
             "proxydiag.rules.logs"],
    "probe_replies": ["proxydiag.probe", "proxydiag.probe.steps", "proxydiag.rules.probe"],
}
with atheris.instrument_imports(include=["proxydiag"], exclude=["proxydiag.report"]):
    from tests.fuzz.targets import TARGETS

    for module in GUIDED_BY.get(sys.argv[1] if len(sys.argv) > 1 else "", []):
        __import__(module)


def main() -> None:
    from tests.fuzz.seeds import write_corpus

    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: fuzz.py TARGET [libFuzzer options]; targets: {', '.join(TARGETS)}")
    name, options = sys.argv[1], sys.argv[2:]
    base = Path(os.environ.get("PROXYDIAG_FUZZ_DIR", HERE))  # tests/test_fuzz.py works in a temp dir
    corpus = base / "corpus" / name
    if not corpus.exists() or not any(corpus.iterdir()):
        write_corpus(name, corpus)
    crashes = base / "crashes" / name
    crashes.mkdir(parents=True, exist_ok=True)
    target = TARGETS[name]
    extra = [] if any(option.startswith("-max_len") for option in options) else ["-max_len=8192"]
    atheris.Setup([sys.argv[0], *extra, f"-artifact_prefix={crashes}/", *options, str(corpus)], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
