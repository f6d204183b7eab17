"""Which network addresses DeployMate may reach on a user's behalf (webhooks, SSH targets).

Refused always: "this network", link-local (cloud metadata lives at 169.254.169.254), the
metadata addresses of other ranges, multicast, broadcast and reserved. Loopback and private
ranges only when the caller's setting allows them. IPv4 hidden in IPv6 forms counts as IPv4.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "169.254.0.0/16",
        "100.100.100.200/32",
        "::/128",
        "fe80::/10",
        "fd00:ec2::254/128",
    )
)
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
RESOLVE_TIMEOUT = 3.0


class Unresolvable(ValueError):
    """The host name does not resolve (or not in time)."""


def embedded_v4(ip: IPAddress) -> IPAddress:
    """IPv4 addresses hidden in IPv6 forms (mapped, 6to4, NAT64) are checked as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_problem(ip: IPAddress, *, allow_private: bool, setting: str) -> str | None:
    """Why this address must not be reached ("a ... address"), or None when it may.

    `setting` names the variable that allows private addresses, for the message."""
    ip = embedded_v4(ip)
    if any(ip in net for net in ALWAYS_REFUSED):
        return "a link-local, cloud-metadata or unspecified address (always refused)"
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "not a unicast address (always refused)"
    private = ip.is_loopback or any(ip in net for net in PRIVATE)
    if not private and ip.is_reserved:
        return "a reserved address (always refused)"
    if private or not ip.is_global:
        if allow_private:
            return None
        kind = "loopback" if ip.is_loopback else "private"
        return f"a {kind} address (allowed only with {setting}=true)"
    return None


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (the literal itself for an IP); raises Unresolvable."""
    found_literal = literal(host)
    if found_literal is not None:
        return [found_literal]
    try:
        infos = await asyncio.wait_for(
            asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM),
            timeout=RESOLVE_TIMEOUT,
        )
    except (OSError, TimeoutError, UnicodeError):
        raise Unresolvable(host) from None
    found: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            continue
        if ip not in found:
            found.append(ip)
    if not found:
        raise Unresolvable(host)
    return found


async def check_host(host: str, port: int, *, allow_private: bool, setting: str) -> IPAddress:
    """Resolve and check every address; returns the first, or raises ValueError saying why
    (Unresolvable, a ValueError too, when the name does not resolve)."""
    try:
        addresses = await resolve(host, port)
    except Unresolvable:
        raise Unresolvable(f"the host {host} does not resolve") from None
    single_literal = len(addresses) == 1 and literal(host) == addresses[0]
    for ip in addresses:
        problem = address_problem(ip, allow_private=allow_private, setting=setting)
        if problem is not None:
            if single_literal:
                raise ValueError(f"{ip} is {problem}")
            raise ValueError(f"{host} resolves to {ip}, which is {problem}")
    return addresses[0]
