"""proxydiag: find PROXY protocol misconfigurations in front of mail servers."""

__version__ = "0.1.0"
