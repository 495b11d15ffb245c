"""nfnetlink_log's vocabulary: the kernel's names, its two messages, and config requests.

Spelled as in ``include/uapi/linux/netfilter/nfnetlink_log.h``; pyroute2 0.9.7 has no
nfnetlink_log module, so the constants are defined here, once. The pyroute2 message classes
(:class:`nfulnl_msg_config`, :class:`nfulnl_msg_packet`, :class:`MarshalNflog`) build the config
requests and give a slow but thorough decode for tests and the benchmark to check the hot path
(:mod:`knocknft.netlink.nflog_decoder`) against.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar, Final

from pyroute2.netlink import nla
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.nfnetlink import nfgen_msg

from knocknft.netlink.base import NFNETLINK_V0, NFNL_SUBSYS_ULOG, NLM_F_ACK, NLM_F_REQUEST

# --- include/uapi/linux/netfilter/nfnetlink_log.h ---

NFULNL_MSG_PACKET: Final = 0
NFULNL_MSG_CONFIG: Final = 1

NFULA_UNSPEC: Final = 0
NFULA_PACKET_HDR: Final = 1
NFULA_MARK: Final = 2
NFULA_TIMESTAMP: Final = 3
NFULA_IFINDEX_INDEV: Final = 4
NFULA_IFINDEX_OUTDEV: Final = 5
NFULA_IFINDEX_PHYSINDEV: Final = 6
NFULA_IFINDEX_PHYSOUTDEV: Final = 7
NFULA_HWADDR: Final = 8
NFULA_PAYLOAD: Final = 9
NFULA_PREFIX: Final = 10
NFULA_UID: Final = 11
NFULA_SEQ: Final = 12
NFULA_SEQ_GLOBAL: Final = 13
NFULA_GID: Final = 14
NFULA_HWTYPE: Final = 15
NFULA_HWHEADER: Final = 16
NFULA_HWLEN: Final = 17
NFULA_CT: Final = 18
NFULA_CT_INFO: Final = 19
NFULA_VLAN: Final = 20
NFULA_L2HDR: Final = 21

NFULNL_CFG_CMD_NONE: Final = 0
NFULNL_CFG_CMD_BIND: Final = 1
NFULNL_CFG_CMD_UNBIND: Final = 2
NFULNL_CFG_CMD_PF_BIND: Final = 3
NFULNL_CFG_CMD_PF_UNBIND: Final = 4

NFULA_CFG_UNSPEC: Final = 0
NFULA_CFG_CMD: Final = 1
NFULA_CFG_MODE: Final = 2
NFULA_CFG_NLBUFSIZ: Final = 3
NFULA_CFG_TIMEOUT: Final = 4
NFULA_CFG_QTHRESH: Final = 5
NFULA_CFG_FLAGS: Final = 6

NFULNL_COPY_NONE: Final = 0x00
NFULNL_COPY_META: Final = 0x01
NFULNL_COPY_PACKET: Final = 0x02

NFULNL_CFG_F_SEQ: Final = 0x0001
NFULNL_CFG_F_SEQ_GLOBAL: Final = 0x0002
NFULNL_CFG_F_CONNTRACK: Final = 0x0004

# nlmsg_type of the two nfnetlink_log messages: subsystem in the high byte.
NFULNL_PACKET_TYPE: Final = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
NFULNL_CONFIG_TYPE: Final = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG


# --- pyroute2 message classes, for config requests and reference decoding ---
# pyroute2 ships no type hints, so its base classes are Any to mypy.


class nfulnl_msg_packet(nfgen_msg):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
    """A logged packet (NFULNL_MSG_PACKET), as the kernel builds it."""

    prefix = "NFULA_"
    nla_map = (
        ("NFULA_UNSPEC", "none"),
        ("NFULA_PACKET_HDR", "nfulnl_msg_packet_hdr"),
        ("NFULA_MARK", "be32"),
        ("NFULA_TIMESTAMP", "nfulnl_msg_packet_timestamp"),
        ("NFULA_IFINDEX_INDEV", "be32"),
        ("NFULA_IFINDEX_OUTDEV", "be32"),
        ("NFULA_IFINDEX_PHYSINDEV", "be32"),
        ("NFULA_IFINDEX_PHYSOUTDEV", "be32"),
        ("NFULA_HWADDR", "nfulnl_msg_packet_hw"),
        ("NFULA_PAYLOAD", "cdata"),
        ("NFULA_PREFIX", "asciiz"),
        ("NFULA_UID", "be32"),
        ("NFULA_SEQ", "be32"),
        ("NFULA_SEQ_GLOBAL", "be32"),
        ("NFULA_GID", "be32"),
        ("NFULA_HWTYPE", "be16"),
        ("NFULA_HWHEADER", "cdata"),
        ("NFULA_HWLEN", "be16"),
        ("NFULA_CT", "cdata"),
        ("NFULA_CT_INFO", "be32"),
        ("NFULA_VLAN", "nfula_vlan"),
        ("NFULA_L2HDR", "cdata"),
    )

    class nfulnl_msg_packet_hdr(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("hw_protocol", "!H"), ("hook", "B"), ("_pad", "B"))

    class nfulnl_msg_packet_timestamp(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("sec", "!Q"), ("usec", "!Q"))

    class nfulnl_msg_packet_hw(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("hw_addrlen", "!H"), ("_pad", "H"), ("hw_addr", "8s"))

    class nfula_vlan(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        prefix = "NFULA_VLAN_"
        nla_map = (
            ("NFULA_VLAN_UNSPEC", "none"),
            ("NFULA_VLAN_PROTO", "be16"),
            ("NFULA_VLAN_TCI", "be16"),
        )


class nfulnl_msg_config(nfgen_msg):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
    """A configuration request (NFULNL_MSG_CONFIG) for one log group."""

    prefix = "NFULA_CFG_"
    nla_map = (
        ("NFULA_CFG_UNSPEC", "none"),
        ("NFULA_CFG_CMD", "nfulnl_msg_config_cmd"),
        ("NFULA_CFG_MODE", "nfulnl_msg_config_mode"),
        ("NFULA_CFG_NLBUFSIZ", "be32"),
        ("NFULA_CFG_TIMEOUT", "be32"),
        ("NFULA_CFG_QTHRESH", "be32"),
        ("NFULA_CFG_FLAGS", "be16"),
    )

    class nfulnl_msg_config_cmd(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("command", "B"),)

    class nfulnl_msg_config_mode(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("copy_range", "!I"), ("copy_mode", "B"), ("_pad", "B"))


class MarshalNflog(Marshal):  # type: ignore[misc]  # pyroute2 is untyped
    """pyroute2's generic parser, taught the two nfnetlink_log messages."""

    msg_map: ClassVar[dict[int, Any]] = {
        NFULNL_PACKET_TYPE: nfulnl_msg_packet,
        NFULNL_CONFIG_TYPE: nfulnl_msg_config,
    }


def config_request(group: int, sequence: int, attrs: list[tuple[str, Any]]) -> bytes:
    """Encode one NFULNL_MSG_CONFIG request for ``group`` that asks for an ack.

    ``attrs`` are (NFULA_CFG_* name, value) pairs, e.g.
    ``[("NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_BIND})]``.
    """
    msg = nfulnl_msg_config()
    msg["nfgen_family"] = socket.AF_UNSPEC
    msg["version"] = NFNETLINK_V0
    msg["res_id"] = group
    msg["attrs"] = [list(pair) for pair in attrs]
    msg["header"]["type"] = NFULNL_CONFIG_TYPE
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = sequence
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)
