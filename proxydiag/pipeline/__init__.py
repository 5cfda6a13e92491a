"""Evidence -> facts -> judge -> report, composed: batch, live and cross-evidence runs."""
