"""The allowlist-element codec: what the grant path encodes, the notification path decodes the same.

setelem writes elements and nftevents reads the kernel's announcements of them through the one
codec in knocknft.netlink.element; these tests hold the two directions equal, and check the bytes
against pyroute2's reading of them, a decoder that is not ours.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from pyroute2.netlink.nfnetlink.nftsocket import nft_set_elem_list_msg

from knocknft.config import PortSpec
from knocknft.core.grants import Grant
from knocknft.netlink.base import NFGENMSG_LEN, NLMSG_HDRLEN, attr, iter_messages, nest
from knocknft.netlink.element import (
    NFTA_DATA_VALUE,
    NFTA_LIST_ELEM,
    NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE,
    ElementList,
    SetElement,
    decode_element_list,
    encode_element_list,
    encode_key,
)
from knocknft.netlink.nftevents import ElementAdded, ElementDeleted, decode_events
from knocknft.netlink.setelem import encode_grant_batch

A4 = ipaddress.ip_address("198.18.0.2")
A6 = ipaddress.ip_address("2001:db8::2")
SSH = Grant(A4, PortSpec(22, "tcp"), "ssh", 30)
DNS6 = Grant(A6, PortSpec(53, "udp"), "dns", 600)


@pytest.mark.parametrize(
    "elements",
    [
        ElementList("knocknft", "allow4", (SetElement(A4, PortSpec(22), 30_000, None, "ssh"),)),
        ElementList(
            "knocknft", "allow6", (SetElement(A6, PortSpec(53, "udp"), 600_000, 599_250, "dns"),)
        ),
        ElementList("t", "allow4", (SetElement(A4, PortSpec(65535, "udp")),)),
        ElementList(
            "knocknft",
            "allow6",
            (SetElement(A6, PortSpec(1), 1000, None, ""), SetElement(A6, PortSpec(2), 2000)),
        ),
    ],
    ids=["v4-timeout-comment", "v6-expiration", "bare-key", "two-elements"],
)
def test_decode_gives_back_what_encode_wrote(elements: ElementList) -> None:
    assert decode_element_list(encode_element_list(elements)) == elements


def test_pyroute2_reads_the_encoded_element_as_we_meant_it() -> None:
    body = encode_element_list(
        ElementList(
            "knocknft", "allow6", (SetElement(A6, PortSpec(53, "udp"), 600_000, None, "dns"),)
        )
    )
    message = struct.pack("=IHHII", NLMSG_HDRLEN + NFGENMSG_LEN + len(body), 0, 0, 0, 0)
    msg = nft_set_elem_list_msg(message + bytes(NFGENMSG_LEN) + body)
    msg.decode()
    (elem,) = msg.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS")
    assert msg.get_attr("NFTA_SET_ELEM_LIST_TABLE") == "knocknft"
    assert msg.get_attr("NFTA_SET_ELEM_LIST_SET") == "allow6"
    key = bytes(elem.get_attr("NFTA_SET_ELEM_KEY").get_attr("NFTA_DATA_VALUE"))
    assert key == A6.packed + bytes([17, 0, 0, 0, 0, 53, 0, 0])
    assert elem.get_attr("NFTA_SET_ELEM_TIMEOUT") == 600_000
    assert dict(elem.get_attr("NFTA_SET_ELEM_USERDATA")) == {"NFTNL_UDATA_SET_ELEM_COMMENT": b"dns"}


@pytest.mark.parametrize("grant", [SSH, DNS6], ids=["ipv4", "ipv6"])
def test_a_grant_batch_read_as_notifications_announces_the_same_grant(grant: Grant) -> None:
    """The bytes setelem sends are the bytes the kernel echoes to nft monitor, minus expiration."""
    batch, _ = encode_grant_batch("knocknft", [grant], 1)
    assert decode_events(batch, "knocknft") == [
        ElementAdded(grant.address, grant.service, "", None),
        ElementDeleted(grant.address, grant.service),
        ElementAdded(grant.address, grant.service, grant.door, None),
    ]
    assert decode_events(batch, "other") == []


def test_the_grant_batch_carries_the_timeout_in_milliseconds() -> None:
    batch, _ = encode_grant_batch("knocknft", [DNS6], 1)
    last_add = list(iter_messages(batch))[-2]
    offset, length = last_add[0], last_add[1]
    found = decode_element_list(batch[offset + NLMSG_HDRLEN + NFGENMSG_LEN : offset + length])
    assert found == ElementList(
        "knocknft", "allow6", (SetElement(A6, PortSpec(53, "udp"), 600_000, None, "dns"),)
    )


def test_elements_that_are_not_allowlist_keys_are_left_out() -> None:
    """The rules' anonymous sets hold bare ports; an unknown protocol is no grant either."""

    def element(key: bytes) -> bytes:
        return nest(NFTA_LIST_ELEM, nest(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, key)))

    port_only = struct.pack("!H2x", 22)
    sctp = A4.packed + bytes([132, 0, 0, 0, 0, 22, 0, 0])
    body = (
        attr(NFTA_SET_ELEM_LIST_TABLE, b"knocknft\0")
        + attr(NFTA_SET_ELEM_LIST_SET, b"__set0\0")
        + nest(
            NFTA_SET_ELEM_LIST_ELEMENTS,
            element(port_only),
            element(sctp),
            element(encode_key(A4, PortSpec(22))),
        )
    )
    assert decode_element_list(body) == ElementList(
        "knocknft", "__set0", (SetElement(A4, PortSpec(22)),)
    )


def test_another_tables_elements_are_not_read() -> None:
    body = encode_element_list(ElementList("other", "allow4", (SetElement(A4, PortSpec(22)),)))
    assert decode_element_list(body, table="knocknft") is None
    assert decode_element_list(body, table="other") is not None


def test_a_comment_longer_than_nftables_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than nftables allows"):
        encode_element_list(
            ElementList("t", "allow4", (SetElement(A4, PortSpec(22), comment="x" * 128),))
        )
