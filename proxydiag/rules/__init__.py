"""The judges: the catalog (its pages, `catalog`), one rule per finding in the module of
its block, gathered by `registry`, and run in two passes by `judge` over the facts."""
