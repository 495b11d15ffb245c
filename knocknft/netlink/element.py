"""One set element in nf_tables' binary form, both ways: the only place that knows the layout.

An element of `allow4`/`allow6` (or of a deny set) travels as the body of an NFT_MSG_NEWSETELEM
or NFT_MSG_DELSETELEM message: table, set, and a list of elements, each a key (address .
protocol . port, or a deny set's address alone), an optional timeout, expiration and comment.
:mod:`knocknft.netlink.setelem` encodes it to grant; :mod:`knocknft.netlink.nftevents` decodes
what the kernel announces. Keeping both directions here means they cannot drift apart; the
round trip is tested.

Pure: bytes in, values out.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from knocknft.config import IPAddress, PortSpec
from knocknft.netlink.base import attr, decode_string, encode_string, iter_attrs, nest

__all__ = ["ElementList", "SetElement", "decode_element_list", "encode_element_list"]

# include/uapi/linux/netfilter/nf_tables.h. pyroute2 0.9.7 names these only inside the nla_map
# tuples of its message classes (by position), not as constants, so they are spelled here.
NFTA_SET_ELEM_LIST_TABLE: Final = 1
NFTA_SET_ELEM_LIST_SET: Final = 2
NFTA_SET_ELEM_LIST_ELEMENTS: Final = 3
NFTA_LIST_ELEM: Final = 1
NFTA_SET_ELEM_KEY: Final = 1
NFTA_SET_ELEM_TIMEOUT: Final = 4
NFTA_SET_ELEM_EXPIRATION: Final = 5
NFTA_SET_ELEM_USERDATA: Final = 6
NFTA_DATA_VALUE: Final = 1
# libnftnl's user-data TLV that `nft` shows as an element's comment.
NFTNL_UDATA_SET_ELEM_COMMENT: Final = 0
# libnftnl's limit on an element's comment, with its terminating NUL.
_MAX_COMMENT: Final = 128

_PROTOCOL_NUMBERS: Final = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_PROTOCOL_NAMES: Final = {number: name for name, number in _PROTOCOL_NUMBERS.items()}
# Each field of the key `address . inet_proto . inet_service` is padded to 4 bytes, as nftables
# lays out concatenations in its 32-bit registers: the protocol is one byte and three of padding,
# the port two bytes in network order and two of padding.
_PROTOCOL_FIELD: Final = struct.Struct("=B3x")
_PORT_FIELD: Final = struct.Struct("!H2x")
_KEY_TAIL: Final = _PROTOCOL_FIELD.size + _PORT_FIELD.size
_BE64: Final = struct.Struct("!Q")
_UDATA: Final = struct.Struct("=BB")  # type, length


@dataclass(frozen=True)
class SetElement:
    """One element: its key, and the fields the kernel keeps with it. `service` is None for a
    key of an address alone (a deny set's).

    `timeout_ms` is what the element was given, `expiration_ms` what is left of it (the kernel
    reports that; a request does not send it), `comment` the door's name; None when absent.
    """

    address: IPAddress
    service: PortSpec | None
    timeout_ms: int | None = None
    expiration_ms: int | None = None
    comment: str | None = None


@dataclass(frozen=True)
class ElementList:
    """The body of a set-element message: which table and set, and the elements."""

    table: str
    set_name: str
    elements: tuple[SetElement, ...]


# --- encoding ---


def encode_key(address: IPAddress, service: PortSpec | None) -> bytes:
    """The set key `address . inet_proto . inet_service`, or the address alone."""
    if service is None:
        return address.packed
    return (
        address.packed
        + _PROTOCOL_FIELD.pack(_PROTOCOL_NUMBERS[service.protocol])
        + _PORT_FIELD.pack(service.port)
    )


def _encode_comment(text: str) -> bytes:
    value = encode_string(text)
    if len(value) > _MAX_COMMENT:
        raise ValueError(f"comment {text!r} is longer than nftables allows")
    return _UDATA.pack(NFTNL_UDATA_SET_ELEM_COMMENT, len(value)) + value


def _encode_element(element: SetElement) -> bytes:
    fields = [
        nest(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, encode_key(element.address, element.service)))
    ]
    if element.timeout_ms is not None:
        fields.append(attr(NFTA_SET_ELEM_TIMEOUT, _BE64.pack(element.timeout_ms)))
    if element.expiration_ms is not None:
        fields.append(attr(NFTA_SET_ELEM_EXPIRATION, _BE64.pack(element.expiration_ms)))
    if element.comment is not None:
        fields.append(attr(NFTA_SET_ELEM_USERDATA, _encode_comment(element.comment)))
    return nest(NFTA_LIST_ELEM, *fields)


def encode_element_list(elements: ElementList) -> bytes:
    """The message body (after nfgenmsg) that adds or deletes `elements`."""
    return (
        attr(NFTA_SET_ELEM_LIST_TABLE, encode_string(elements.table))
        + attr(NFTA_SET_ELEM_LIST_SET, encode_string(elements.set_name))
        + nest(NFTA_SET_ELEM_LIST_ELEMENTS, *map(_encode_element, elements.elements))
    )


# --- decoding ---


def decode_key(
    key: bytes, *, address_only: bool = False
) -> tuple[IPAddress, PortSpec | None] | None:
    """The address and service in an allowlist key, or with `address_only` the address in a
    deny set's key (service None); None for any other key."""
    if address_only:
        return (ipaddress.ip_address(key), None) if len(key) in (4, 16) else None
    width = len(key) - _KEY_TAIL
    if width not in (4, 16):
        return None
    (protocol,) = _PROTOCOL_FIELD.unpack_from(key, width)
    name = _PROTOCOL_NAMES.get(protocol)
    if name is None:
        return None
    (port,) = _PORT_FIELD.unpack_from(key, width + _PROTOCOL_FIELD.size)
    return ipaddress.ip_address(key[:width]), PortSpec(port, "tcp" if name == "tcp" else "udp")


def _decode_comment(userdata: bytes) -> str | None:
    """The comment among libnftnl's user-data TLVs (one byte type, one byte length)."""
    offset = 0
    while offset + _UDATA.size <= len(userdata):
        kind, length = _UDATA.unpack_from(userdata, offset)
        start = offset + _UDATA.size
        if kind == NFTNL_UDATA_SET_ELEM_COMMENT:
            return decode_string(userdata[start : start + length])
        offset = start + length
    return None


def _be64(payload: bytes | None) -> int | None:
    if payload is None or len(payload) != _BE64.size:
        return None
    value: int = _BE64.unpack(payload)[0]
    return value


def _decode_element(payload: bytes, *, address_only: bool) -> SetElement | None:
    fields = dict(iter_attrs(payload))
    key = dict(iter_attrs(fields.get(NFTA_SET_ELEM_KEY, b""))).get(NFTA_DATA_VALUE, b"")
    decoded = decode_key(key, address_only=address_only)
    if decoded is None:
        return None
    userdata = fields.get(NFTA_SET_ELEM_USERDATA)
    return SetElement(
        *decoded,
        timeout_ms=_be64(fields.get(NFTA_SET_ELEM_TIMEOUT)),
        expiration_ms=_be64(fields.get(NFTA_SET_ELEM_EXPIRATION)),
        comment=None if userdata is None else _decode_comment(userdata),
    )


def decode_element_list(
    body: bytes, *, table: str | None = None, address_sets: Collection[str] = ()
) -> ElementList | None:
    """The table, set and allowlist elements in a message body, or for a set named in
    `address_sets` its elements keyed by an address alone; other elements are left out (a key's
    length alone cannot tell an address from the rules' anonymous sets' ports).

    With `table`, None for a body about another table, whose elements are not even read: another
    firewall's sets can hold many thousands.
    """
    fields = dict(iter_attrs(body))
    table_name = decode_string(fields.get(NFTA_SET_ELEM_LIST_TABLE, b""))
    if table is not None and table_name != table:
        return None
    set_name = decode_string(fields.get(NFTA_SET_ELEM_LIST_SET, b""))
    address_only = set_name in address_sets
    elements = []
    for kind, payload in iter_attrs(fields.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")):
        element = (
            _decode_element(payload, address_only=address_only) if kind == NFTA_LIST_ELEM else None
        )
        if element is not None:
            elements.append(element)
    return ElementList(table_name, set_name, tuple(elements))
