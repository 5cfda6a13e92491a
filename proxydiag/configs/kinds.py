"""Every kind of proxy configuration: the detection of a file's kind and the reader of
each (`proxydiag.configs` hands these names out)."""

from __future__ import annotations

import re

from proxydiag.configs import caddy, envoy, haproxy, kubernetes, nginx, stalwart_proxy, stunnel, traefik, traefik_labels
from proxydiag.configs.model import ConfigReadError, FrontListener, ProxyConfig, read_text
from proxydiag.configs.tree import Source
from proxydiag.parsers.userinput import read_text_bounded

KINDS = ("haproxy", "nginx", "stunnel", "traefik", "caddy", "envoy", "kubernetes", "stalwart-proxy")
# Kinds recognised but not read: what to say instead of a wrong guess.
NOT_READ = (
    ("Stalwart's configuration (give it with --stalwart-config)",
     re.compile(r"(?m)^[ \t]*\[?server\.(listener|proxy)\b|\"(NetworkListener|proxyTrustedNetworks)\"")),
    ("a Kubernetes manifest without a Service or Traefik TCP route", re.compile(r"(?m)^[ \t]*apiVersion\s*:")),
)
# Structured kinds first: their files can hold words the text formats look for.
DETECTORS = (
    ("stalwart-proxy", stalwart_proxy.looks_like),
    ("envoy", envoy.looks_like), ("traefik", lambda text: traefik_labels.looks_like(text) or traefik.looks_like(text)), ("kubernetes", kubernetes.looks_like),
    ("caddy", caddy.looks_like), ("haproxy", haproxy.looks_like), ("nginx", nginx.looks_like),
    ("stunnel", stunnel.looks_like),
)


def detect_kind(text: str) -> str | None:
    return next((kind for kind, looks_like in DETECTORS if looks_like(text)), None)


def load(path: str, kind: str | None = None, entry_points: dict[str, FrontListener] | None = None) -> ProxyConfig:
    """One configuration file, of the kind given or recognised from its content (Traefik
    routes find their entry points in `entry_points`, from the other files given)."""
    kind = kind or kind_of(path)
    if kind == "traefik":
        return _load_traefik(path, entry_points)
    reader = {"haproxy": haproxy.load, "nginx": nginx.load, "stunnel": stunnel.load, "caddy": caddy.load,
              "envoy": envoy.load, "kubernetes": kubernetes.load, "stalwart-proxy": stalwart_proxy.load}.get(kind)
    if reader is None:
        raise ConfigReadError(path, None, f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    return reader(path)


def kind_of(path: str) -> str:
    try:
        text = read_text_bounded(path)
    except OSError as error:
        raise ConfigReadError(path, None, f"cannot read ({error.strerror or error})") from None
    kind = detect_kind(text)
    if kind is None:
        other = next((name for name, pattern in NOT_READ if pattern.search(text)), None)
        raise ConfigReadError(path, None, f"this looks like {other}, which check does not read" if other else
                              f"not a configuration check reads ({', '.join(KINDS)}; --kind to say which)")
    return kind


def _load_traefik(path: str, entry_points: dict[str, FrontListener] | None) -> ProxyConfig:
    """A compose file's Docker labels, or Traefik's own files (static, dynamic, CRDs)."""
    text = read_text(path)
    docs = traefik.documents(text, path)
    if len(docs) == 1 and traefik_labels.is_compose(docs[0]):
        return traefik_labels.parse(Source(path, text), docs[0], entry_points)
    return traefik.parse(text, path, entry_points)


def traefik_entry_points(paths: list[str]) -> dict[str, FrontListener]:
    """The entry points of every readable Traefik static configuration among `paths` (and of
    the Traefik container's command in a compose file)."""
    found: dict[str, FrontListener] = {}
    for path in paths:
        try:
            text = read_text(path)
            for document in traefik.documents(text, path):
                found.update(traefik.file_entry_points(Source(path, text), document))
                if traefik_labels.is_compose(document):
                    found.update(traefik_labels.entry_points(Source(path, text), document))
        except ConfigReadError:
            continue
    return found
