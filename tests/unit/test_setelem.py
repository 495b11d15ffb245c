"""The direct set-element batch: the bytes say what `render_grant` says in nft syntax.

pyroute2's nf_tables message classes read the batch back, so the layout is checked by a decoder
that is not ours; the kernel's verdict on the same bytes is in tests/integration/test_setelem.py.
"""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest
from pyroute2.netlink.nfnetlink.nftsocket import nft_set_elem_list_msg

from knocknft.config import PortSpec
from knocknft.core.grants import Grant
from knocknft.netlink.base import (
    NFNL_MSG_BATCH_BEGIN,
    NFNL_MSG_BATCH_END,
    NFNL_SUBSYS_NFTABLES,
    NFT_MSG_DELSETELEM,
    NFT_MSG_NEWSETELEM,
    NLM_F_ACK,
    iter_acks,
)
from knocknft.netlink.setelem import encode_grant_batch

SSH = Grant(ipaddress.ip_address("198.18.0.2"), PortSpec(22, "tcp"), "ssh", 30)
DNS6 = Grant(ipaddress.ip_address("2001:db8::2"), PortSpec(53, "udp"), "dns", 600)


def split(batch: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, whole message) of each message in a batch."""
    out = []
    offset = 0
    while offset < len(batch):
        length, kind, flags, seq, _ = struct.unpack_from("=IHHII", batch, offset)
        out.append((kind, flags, seq, batch[offset : offset + length]))
        offset += (length + 3) & ~3
    return out


def elements(message: bytes) -> dict[str, object]:
    msg = nft_set_elem_list_msg(message)
    msg.decode()
    (elem,) = msg.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS")
    key = elem.get_attr("NFTA_SET_ELEM_KEY").get_attr("NFTA_DATA_VALUE")
    udata = elem.get_attr("NFTA_SET_ELEM_USERDATA")
    return {
        "table": msg.get_attr("NFTA_SET_ELEM_LIST_TABLE"),
        "set": msg.get_attr("NFTA_SET_ELEM_LIST_SET"),
        "key": bytes(key),
        "timeout": elem.get_attr("NFTA_SET_ELEM_TIMEOUT"),
        "comment": None if udata is None else dict(udata).get("NFTNL_UDATA_SET_ELEM_COMMENT"),
    }


def test_a_grant_is_add_delete_add_inside_one_batch() -> None:
    batch, last = encode_grant_batch("knocknft", [SSH], 100)
    messages = split(batch)
    new = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM
    delete = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_DELSETELEM
    assert [m[0] for m in messages] == [NFNL_MSG_BATCH_BEGIN, new, delete, new, NFNL_MSG_BATCH_END]
    assert [m[2] for m in messages] == [100, 101, 102, 103, 104]
    # One ack, on the last element message: the kernel answers the whole batch before it, and
    # reports any failing message whether it asked for an ack or not.
    assert last == 103
    assert [bool(m[1] & NLM_F_ACK) for m in messages] == [False, False, False, True, False]


def test_the_last_add_carries_the_timeout_in_ms_and_the_door_as_comment() -> None:
    _, first, _, last, _ = split(encode_grant_batch("knocknft", [SSH], 1)[0])
    assert elements(last[3]) == {
        "table": "knocknft",
        "set": "allow4",
        # 198.18.0.2 . tcp . 22, each field in a 32-bit register
        "key": bytes([198, 18, 0, 2, 6, 0, 0, 0, 0, 22, 0, 0]),
        "timeout": 30_000,
        "comment": b"ssh",
    }
    # The first add only makes the delete valid; it carries a timeout too, never a permanent one.
    assert elements(first[3])["timeout"] == 30_000


def test_ipv6_grants_go_to_allow6_with_a_24_byte_key() -> None:
    _, _, _, last, _ = split(encode_grant_batch("t", [DNS6], 1)[0])
    got = elements(last[3])
    assert got["set"] == "allow6"
    assert got["key"] == DNS6.address.packed + bytes([17, 0, 0, 0, 0, 53, 0, 0])
    assert got["timeout"] == 600_000


def test_several_grants_share_one_transaction() -> None:
    batch, last = encode_grant_batch("knocknft", [SSH, DNS6], 7)
    assert last == 13
    kinds = [m[0] for m in split(batch)]
    assert kinds.count(NFNL_MSG_BATCH_BEGIN) == kinds.count(NFNL_MSG_BATCH_END) == 1


@pytest.mark.parametrize("timeout", [0, -5, 8 * 24 * 3600])
def test_no_grant_is_ever_permanent_or_absurd(timeout: int) -> None:
    with pytest.raises(ValueError):
        encode_grant_batch("knocknft", [Grant(SSH.address, SSH.service, "ssh", timeout)], 1)


def test_acks_and_errors_are_read_by_sequence_number() -> None:
    def error(seq: int, code: int) -> bytes:
        body = struct.pack("=i", -code) + struct.pack("=IHHII", 20, 0, 0, seq, 0)
        return struct.pack("=IHHII", 16 + len(body), 2, 0, seq, 0) + body

    data = error(5, 0) + error(6, errno.ENOENT)
    assert list(iter_acks(data)) == [(5, 0), (6, errno.ENOENT)]
    assert list(iter_acks(data[:10])) == []
