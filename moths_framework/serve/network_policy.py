"""``--deny-private-networks``: image URLs may lead only to public internet addresses.

The check sits where connections are made (an httpcore network backend), so it
holds for every connection a fetch opens, redirects included. Each host is
resolved once, every address it resolves to is checked, and the connection
goes to a checked address: a name that resolves to a public address for the
check and to a private one for the connection (DNS rebinding) gets nowhere.
TLS still verifies the certificate against the host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore

__all__ = ["CheckedNetwork", "DeniedAddress", "is_public_address", "resolve_addresses"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class DeniedAddress(Exception):
    """A host that resolves to an address the policy denies."""


def is_public_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is a public unicast address, and so are the IPv4 addresses inside it.

    Denied: loopback, RFC 1918, link-local (169.254.169.254, the cloud metadata
    service), carrier-grade NAT, IPv6 unique local, unspecified, multicast,
    reserved and documentation ranges; an IPv6 address that carries a denied
    IPv4 address (IPv4-mapped, 6to4, Teredo) is denied too.
    """
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        return all(is_public_address(v4) for v4 in inner if v4 is not None)
    return True


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class CheckedNetwork(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that ``allowed`` accepts, after resolving the host itself.

    Args:
        allowed: the policy for one address; default :func:`is_public_address`.
        resolve: ``(host, port) -> addresses``; default :func:`resolve_addresses`.
    """

    def __init__(
        self,
        allowed: Callable[[IPAddress], bool] = is_public_address,
        resolve: Resolver = resolve_addresses,
    ) -> None:
        self._allowed = allowed
        self._resolve = resolve
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: Exception | None = None
        for address in await self.checked_addresses(host, port):
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as failed:  # try the next checked address
                error = failed
        raise error or httpcore.ConnectError(f"no address for {host!r}")

    async def checked_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, all of them allowed.

        Raises:
            DeniedAddress: any of them is denied.
            httpcore.ConnectError: the host does not resolve.
        """
        try:
            resolved = await self._resolve(host, port)
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolved]
        except (OSError, UnicodeError, ValueError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {error}") from None
        denied = [str(ip) for ip in addresses if not self._allowed(ip)]
        if denied:
            raise DeniedAddress(
                f"{host!r} resolves to {', '.join(denied)}: a private or special-purpose address"
            )
        return [str(ip) for ip in addresses]

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DeniedAddress("unix sockets are never fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)
