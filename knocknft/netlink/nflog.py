"""The NFLOG adapter: knock packets from the kernel's nfnetlink_log.

An nftables rule ``log group N`` hands each matching packet to the kernel's nfnetlink_log, which
queues a copy on the one netlink socket bound to group N. :class:`NflogSocket` is that socket: it
binds the group, sets the copy mode, and turns ``recv()`` into lists of
:class:`~knocknft.netlink.packet.KnockPacket` through the hot-path
:class:`~knocknft.netlink.nflog_decoder.NflogDecoder`. The kernel's names and config requests
are in :mod:`knocknft.netlink.nflog_messages`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Generic, Protocol, Self, TypeVar

from knocknft.config import MAX_NFLOG_GROUP
from knocknft.errors import KnocknftError
from knocknft.netlink.base import (
    NETLINK_NETFILTER,
    NETLINK_NO_ENOBUFS,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    NLMSGERR,
    SOL_NETLINK,
    Buffer,
    iter_messages,
    set_socket_buffer,
)
from knocknft.netlink.nflog_decoder import NflogCounters, NflogDecoder
from knocknft.netlink.nflog_messages import (
    NFULNL_CFG_CMD_BIND,
    NFULNL_CFG_CMD_UNBIND,
    NFULNL_CFG_F_SEQ,
    NFULNL_COPY_PACKET,
    config_request,
)
from knocknft.netlink.packet import KnockPacket
from knocknft.netlink.spa_nflog import SPA_COPY_RANGE, SpaDatagram, SpaNflogDecoder

__all__ = ["NflogError", "NflogGroupBusy", "NflogReader", "NflogSocket", "spa_socket"]

_CAP_NET_ADMIN: Final = 12


def _has_net_admin() -> bool | None:
    """Whether this process holds CAP_NET_ADMIN; None when /proc cannot say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except (OSError, ValueError):
        return None
    return None


class NflogError(KnocknftError):
    """The kernel refused an NFLOG request, or the NFLOG socket failed."""


class NflogGroupBusy(NflogError):
    """Another socket already owns the NFLOG group."""


_RECV_SIZE: Final = 1 << 20
_RECEIVE_BUFFER: Final = 8 << 20
# recv() calls per read_batch(): about 2 ms of work at full speed, so timers stay on time.
_BATCH_RECVS: Final = 256


P = TypeVar("P")


class PacketDecoder(Protocol[P]):
    """What a reader needs of its decoder: NflogDecoder (knocks), SpaNflogDecoder (SPA)."""

    @property
    def counters(self) -> NflogCounters: ...

    def decode(self, buffer: Buffer, now: float) -> list[P]: ...


class NflogReader(Generic[P]):
    """A netlink socket bound to one NFLOG group, yielding what its decoder makes of each packet.

    The socket is non-blocking: wait for :meth:`fileno` to be readable (select,
    poll, an event loop), then call :meth:`read_batch`, which does one
    ``recv()`` per queued message, up to a limit, and decodes them all. Binding fails with
    :class:`NflogGroupBusy` when another socket owns the group.

    Each packet is handed over as soon as it is logged (queue threshold 1), and
    only its first ``copy_range`` bytes are copied: for knocks, enough for IP, extension
    and transport headers, while keeping each message small so a burst fits the
    receive buffer; for SPA (:func:`spa_socket`), the whole packet.
    """

    def __init__(
        self,
        group: int,
        decoder: PacketDecoder[P],
        *,
        copy_range: int = 128,
        queue_threshold: int = 1,
        flush_timeout: float = 0.01,
        receive_buffer: int = _RECEIVE_BUFFER,
        clock: Callable[[], float] = time.time,
        ack_timeout: float = 5.0,
    ) -> None:
        if not 0 <= group <= MAX_NFLOG_GROUP:
            raise NflogError(f"NFLOG group {group} is out of range: use 0-{MAX_NFLOG_GROUP}")
        self.group = group
        self._clock = clock
        self._ack_timeout = ack_timeout
        self._sequence = 0
        self._backlog: list[bytes] = []
        self._buffer = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._decoder = decoder
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as exc:
            raise NflogError(f"cannot open a netfilter netlink socket: {exc}") from exc
        self._closed = False
        self._bound = False
        try:
            self._sock.bind((0, 0))
            set_socket_buffer(self._sock, receive_buffer)
            # Overflow is reported by NFULA_SEQ gaps instead: an ENOBUFS error
            # says only "something was lost" and interrupts the reader.
            self._sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            self._sock.setblocking(False)
            self._configure("bind", [("NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_BIND})])
            self._bound = True
            self._configure(
                "mode",
                [
                    (
                        "NFULA_CFG_MODE",
                        {"copy_range": copy_range, "copy_mode": NFULNL_COPY_PACKET},
                    ),
                    ("NFULA_CFG_QTHRESH", queue_threshold),
                    ("NFULA_CFG_TIMEOUT", max(0, round(flush_timeout * 100))),
                    ("NFULA_CFG_FLAGS", NFULNL_CFG_F_SEQ),
                ],
            )
        except BaseException:
            self.close()
            raise

    @property
    def counters(self) -> NflogCounters:
        return self._decoder.counters

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_batch(self, limit: int = _BATCH_RECVS) -> list[P]:
        """Decode what is queued, up to ``limit`` ``recv()`` calls; [] when nothing is pending.

        With queue threshold 1 each ``recv()`` returns one message, so a batch of many saves
        the caller's per-batch work (its loop, its timers) for every packet but the first.
        """
        decode = self._decoder.decode
        now = self._clock()
        if self._backlog:
            return decode(self._backlog.pop(0), now)
        packets: list[P] = []
        recv = self._recv_into
        view = self._view
        for _ in range(limit):
            size = recv()
            if size <= 0:
                break
            packets += decode(view[:size], now)
        return packets

    def recv_buffer(self) -> bytes | None:
        """One ``recv()`` of raw netlink bytes, undecoded; None when nothing is pending.

        For capturing test data and debugging; the daemon uses :meth:`read_batch`.
        """
        if self._backlog:
            return self._backlog.pop(0)
        size = self._recv_into()
        if size <= 0:
            return None
        return bytes(self._view[:size])

    def close(self) -> None:
        """Unbind the group (so another process may take it) and close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._bound:
            self._bound = False
            # The kernel also destroys the instance when the socket goes away;
            # unbinding first just makes the release immediate and explicit.
            with contextlib.suppress(NflogError):
                self._configure("unbind", [("NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_UNBIND})])
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _recv_into(self) -> int:
        for _ in range(2):
            try:
                return self._sock.recv_into(self._buffer, _RECV_SIZE)
            except BlockingIOError:
                return 0
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise NflogError(f"NFLOG group {self.group}: recv failed: {exc}") from exc
                # The kernel dropped messages; what is still queued is valid.
                self._decoder.counters.overruns += 1
        return 0

    def _configure(self, what: str, attrs: list[tuple[str, Any]]) -> None:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        sequence = self._sequence
        request = config_request(self.group, sequence, attrs)
        try:
            self._sock.send(request)
        except OSError as exc:
            raise NflogError(f"NFLOG group {self.group}: cannot send {what}: {exc}") from exc
        code = self._await_ack(what, sequence)
        if code == 0:
            return
        group = self.group
        # The kernel answers EPERM both to a process without CAP_NET_ADMIN and
        # to a bind of a group another socket owns; the capability tells which.
        if code == errno.EPERM and _has_net_admin() is False:
            raise NflogError(
                f"NFLOG group {group}: {what} needs CAP_NET_ADMIN; run as root or grant "
                "the capability (systemd: AmbientCapabilities=CAP_NET_ADMIN)"
            )
        if what == "bind" and code == errno.EPERM:
            raise NflogGroupBusy(
                f"NFLOG group {group} is already bound by another socket (ulogd, another "
                "knocknft?); stop that reader or use another group in both the config and "
                "the log rule"
            )
        if what == "bind" and code == errno.EBUSY:
            raise NflogGroupBusy(f"NFLOG group {group} is already bound by this socket")
        hint = (
            " (is the nfnetlink_log module available?)"
            if code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT)
            else ""
        )
        raise NflogError(
            f"NFLOG group {group}: the kernel refused {what}: {os.strerror(code)}{hint}"
        )

    def _await_ack(self, what: str, sequence: int) -> int:  # noqa: C901 - each kind of kernel reply to a request is one branch
        """Wait for the kernel's answer to ``sequence``; keep any packets that arrive meanwhile."""
        deadline = time.monotonic() + self._ack_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NflogError(f"NFLOG group {self.group}: no answer to {what} from the kernel")
            readable, _, _ = select.select([self._sock], [], [], remaining)
            if not readable:
                continue
            try:
                size = self._sock.recv_into(self._buffer, _RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._decoder.counters.overruns += 1
                    continue
                raise NflogError(f"NFLOG group {self.group}: recv failed: {exc}") from exc
            data = bytes(self._view[:size])
            answer: int | None = None
            others = False
            for offset, length, msg_type, msg_seq in iter_messages(data):
                if (
                    msg_type == NLMSG_ERROR
                    and msg_seq == sequence
                    and length >= NLMSG_HDRLEN + NLMSGERR.size
                ):
                    answer = -NLMSGERR.unpack_from(data, offset + NLMSG_HDRLEN)[0]
                else:
                    others = True
            if others:
                self._backlog.append(data)
            if answer is not None:
                return answer


class NflogSocket(NflogReader[KnockPacket]):
    """The knock reader: knock packets from group `group`, decoded on the hot path."""

    def __init__(self, group: int, **options: Any) -> None:
        super().__init__(group, NflogDecoder(next_seq=0), **options)


def spa_socket(group: int, **options: Any) -> NflogReader[SpaDatagram]:
    """The SPA reader: every packet to the SPA port, copied whole, as (source, UDP payload)."""
    return NflogReader(group, SpaNflogDecoder(next_seq=0), copy_range=SPA_COPY_RANGE, **options)
