"""--deny-private-networks: which addresses are private, and that the check holds after DNS.

The fetcher resolves each host itself, checks every address, then connects to
the address it checked: a name cannot resolve to a public address for the check
and to a private one for the connection (DNS rebinding). Redirects open new
connections and are checked the same way. Fake resolvers keep every connection
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from helpers.image_host import ImageHost
from helpers.image_samples import png_bytes

from moths_framework.serve.fetch import FetchError, ImageFetcher
from moths_framework.serve.network_policy import CheckedNetwork, is_public_address

DENIED = [
    "127.0.0.1", "127.8.9.10", "::1",  # loopback
    "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1",  # RFC 1918
    "169.254.169.254", "fe80::1",  # link-local, cloud metadata
    "fc00::1", "fd12:3456::1",  # IPv6 unique local
    "0.0.0.0", "::",  # unspecified
    "224.0.0.1", "239.255.255.250", "ff02::1",  # multicast
    "240.0.0.1", "255.255.255.255",  # reserved, broadcast
    "100.64.0.1",  # carrier-grade NAT
    "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # IPv4-mapped
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
]  # fmt: skip
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", DENIED)
def test_private_and_special_addresses_are_denied(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def _resolver(table: dict[str, list[str]], calls: list[str]):  # noqa: ANN202
    async def resolve(name: str, port: int) -> list[str]:
        calls.append(name)
        return table[name]

    return resolve


async def _fetch(fetcher: ImageFetcher, url: str) -> bytes:
    try:
        return await fetcher.fetch(url)
    finally:
        await fetcher.aclose()


def test_every_resolved_address_is_checked() -> None:
    calls = []
    table = {"mixed.test": ["93.184.216.34", "10.0.0.1"]}
    network = CheckedNetwork(resolve=_resolver(table, calls))
    with pytest.raises(FetchError, match="10.0.0.1"):
        asyncio.run(_fetch(ImageFetcher(network=network), "http://mixed.test/a.png"))
    assert calls == ["mixed.test"]


def test_connects_to_the_address_it_checked(host: ImageHost) -> None:
    data = png_bytes(1)
    host.add("/policy/a.png", data)
    calls, checked = [], []
    network = CheckedNetwork(
        allowed=lambda ip: checked.append(str(ip)) or True,
        resolve=_resolver({"moths.test": ["127.0.0.1"]}, calls),
    )
    url = host.url("/policy/a.png", host="moths.test")  # a name only the fake resolver knows
    assert asyncio.run(_fetch(ImageFetcher(network=network), url)) == data
    assert calls == ["moths.test"] and checked == ["127.0.0.1"]
    path, headers = host.requests[-1]
    assert path == "/policy/a.png" and headers["Host"] == f"moths.test:{host.port}"


def test_redirects_are_checked_after_resolution(host: ImageHost) -> None:
    host.add("/policy/b.png", png_bytes(2))
    target = host.url("/policy/b.png", host="inside.test")
    start = host.redirect("/policy/start", target)
    table = {"127.0.0.1": ["127.0.0.1"], "inside.test": ["127.0.0.2"]}
    network = CheckedNetwork(
        allowed=lambda ip: str(ip) != "127.0.0.2", resolve=_resolver(table, calls := [])
    )
    with pytest.raises(FetchError, match="127.0.0.2"):
        asyncio.run(_fetch(ImageFetcher(network=network), start))
    assert calls == ["127.0.0.1", "inside.test"]
