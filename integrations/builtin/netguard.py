"""The outbound address guard: keep model-chosen URLs off our own network.

A URL the model (or a prompt-injected page) picks must not reach loopback services, the private
network, or the cloud metadata endpoint. `check_url()` resolves the host and refuses when ANY
resolved address is non-public, unless the operator allowed it in WEB_FETCH_ALLOWED_HOSTS.

The check alone is not enough: if the HTTP client resolved the name again when connecting, a
DNS server could answer "public" to us and "127.0.0.1" to it (DNS rebinding). `pinned_request()`
therefore builds a request that connects to the vetted IP itself. Any HTTP client built on this
(web_fetch, later the connectors) must follow redirects by hand and call `check_url()` per hop,
and must not use environment proxies, which would resolve the name on their own.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from django.conf import settings

from integrations.tools import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
DEFAULT_HINT = "an operator can allow it with AGENTRY_WEB_FETCH_ALLOWED_HOSTS"

METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
# NAT64 embeds an IPv4 address in the low 32 bits; Python counts the prefix as global.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(ToolError):
    """The URL resolves to an address we won't connect to."""


@dataclass(frozen=True)
class Allowance:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowance:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            except ValueError:
                hosts.add(text.rstrip("."))
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def names(self, url: httpx.URL) -> bool:
        return bool({url.host.rstrip("."), url.raw_host.decode("ascii").rstrip(".")} & self.hosts)

    def contains(self, address: IPAddress) -> bool:
        for network in self.networks:
            if address.version != network.version or address not in network:
                continue
            # A broad range ("0.0.0.0/0", "169.254.0.0/16") shouldn't quietly hand out cloud
            # credentials; the metadata address has to be listed on its own.
            if address in METADATA_ADDRESSES and network.num_addresses != 1:
                continue
            return True
        return False


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("a loopback address"), or None if it's public."""
    if address in METADATA_ADDRESSES:
        return "the cloud metadata address"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        # The packet ends up at the embedded IPv4 address, so that is what counts (the wrapping
        # prefixes themselves look reserved or private to the ipaddress module).
        inner = refusal_reason(embedded)
        return None if inner is None else f"{inner} (embedded IPv4 {embedded})"
    # Most specific first: 127.0.0.1 and 169.254.x.x are also "private" to the ipaddress module.
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None


def parse_url(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolError(f"invalid URL: {exc}") from None
    if parsed.scheme not in SCHEMES:
        raise ToolError(f"only http and https URLs are allowed, not {parsed.scheme or 'a relative URL'!r}")
    if not parsed.raw_host:
        raise ToolError("the URL has no host")
    return parsed


def resolve(url: httpx.URL) -> list[IPAddress]:
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolError(f"could not resolve host {url.host!r}: {exc}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ToolError(f"could not resolve host {url.host!r}")
    return addresses


def check_url(
    url: str | httpx.URL, *, allowed_hosts: Iterable[str] | None = None, hint: str = DEFAULT_HINT
) -> list[IPAddress]:
    """Resolve the URL's host and return its addresses, all vetted; raise BlockedAddress if any
    is non-public and not allowed. `allowed_hosts` defaults to settings.WEB_FETCH_ALLOWED_HOSTS:
    exact host names, or IPs/CIDR networks ("127.0.0.1", "10.0.0.0/8")."""
    parsed = parse_url(url)
    addresses = resolve(parsed)
    if allowed_hosts is None:
        allowed_hosts = getattr(settings, "WEB_FETCH_ALLOWED_HOSTS", None) or []
    allowance = Allowance.parse(allowed_hosts)
    if allowance.names(parsed):
        return addresses
    for address in addresses:
        reason = refusal_reason(address)
        if reason is None or allowance.contains(address):
            continue
        literal = _literal(parsed)
        subject = f"{address} is" if literal is not None else f"{parsed.host} resolves to {address},"
        raise BlockedAddress(f"refused: {subject} {reason}; {hint}")
    return addresses


def _literal(url: httpx.URL) -> IPAddress | None:
    try:
        return ipaddress.ip_address(url.raw_host.decode("ascii"))
    except ValueError:
        return None


def pinned_request(
    client: httpx.Client,
    method: str,
    url: httpx.URL,
    address: IPAddress,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Request:
    """A request for `url` that connects to the already vetted `address` instead of resolving
    the host name again.

    Why the URL-rewrite rather than a custom transport: httpx has no public hook for "connect to
    this IP" (that would mean reaching into httpcore's connection pool), while rewriting the URL
    to the IP uses only public API and the effect is easy to see: the TCP connection goes to the
    IP in the URL, the server still sees the real name in the Host header, and for https the
    `sni_hostname` extension makes TLS send SNI for, and verify the certificate against, the real
    name, so certificate checking is as strict as a normal request. Redirects must be resolved
    against the original `url`, never the rewritten one.
    """
    merged = dict(headers or {})
    if _literal(url) is not None:
        return client.build_request(method, url, headers=merged)
    merged["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    return client.build_request(method, url.copy_with(host=str(address)), headers=merged, extensions=extensions)
