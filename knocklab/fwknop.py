"""Debian's fwknop client, the peer knocknft's SPA doors serve: run inside a lab namespace with
known keys, to send a packet, or only to build one (for a replay, from any source).

The client runs with `--no-rc-file` and `--no-save-args`, and with HOME in a directory of its
own, so nothing of the host's ~/.fwknoprc is read and nothing is left behind. It sends only to
the address the caller names (-D), which a test takes from its own lab.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from knocklab.lab import Host
from knocklab.packets import send_spoofed, spoofed_packet

# Debian's fwknop-client; the server side (fwknopd) is only the bench's peer.
FWKNOP = Path("/usr/bin/fwknop")
# fwknopd's default port (PCAP_FILTER udp port 62201), which knocknft's spa_port defaults to.
SPA_PORT = 62201


@dataclass(frozen=True)
class FwknopKeys:
    """A Rijndael key and an HMAC key, base64 as access.conf's KEY_BASE64 and HMAC_KEY_BASE64
    (and the client's --key-base64-rijndael, --key-base64-hmac) take them."""

    key_base64: str
    hmac_key_base64: str
    hmac_digest: str = "sha256"

    @classmethod
    def random(cls, hmac_digest: str = "sha256") -> FwknopKeys:
        """Fresh keys of the sizes `fwknop --key-gen` makes: 32 bytes, and 64 for the HMAC."""
        return cls(
            base64.b64encode(secrets.token_bytes(32)).decode(),
            base64.b64encode(secrets.token_bytes(64)).decode(),
            hmac_digest,
        )

    def door_yaml(self, indent: str = "    ", *, source: str = "any") -> str:
        """The `fwknop:` block of a door holding these keys, indented for a door's body."""
        return (
            f"{indent}fwknop:\n"
            f"{indent}  source: [{source}]\n"
            f'{indent}  key_base64: "{self.key_base64}"\n'
            f'{indent}  hmac_key_base64: "{self.hmac_key_base64}"\n'
            f"{indent}  hmac_digest: {self.hmac_digest}\n"
        )


def fwknop_argv(
    keys: FwknopKeys,
    server: str,
    *,
    access: str = "tcp/22",
    allow: str | None = None,
    port: int = SPA_PORT,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The client's command line: `allow` is the address inside the packet (-a), None for the
    "any address" form (-s); `extra` adds options (-f 60, --time-offset-minus 300s, ...)."""
    where = ["-a", allow] if allow is not None else ["-s"]
    return [
        str(FWKNOP),
        "--no-rc-file",
        "--no-save-args",
        "-A",
        access,
        *where,
        "-D",
        server,
        "-p",
        str(port),
        "--use-hmac",
        "--key-base64-rijndael",
        keys.key_base64,
        "--key-base64-hmac",
        keys.hmac_key_base64,
        "--hmac-digest-type",
        keys.hmac_digest,
        *extra,
    ]


def send_spa(host: Host, argv: list[str], timeout: float = 30) -> str:
    """Run the client (argv from fwknop_argv) in `host`'s namespace, with a HOME of its own;
    its output, or AssertionError if it fails."""
    with tempfile.TemporaryDirectory(prefix="knocklab-fwknop-") as home:
        result = subprocess.run(
            host.cmd(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "HOME": home},
            check=False,
        )
    if result.returncode != 0:
        raise AssertionError(
            f"fwknop exited {result.returncode}:\n{result.stdout}{result.stderr}\n"
            f"argv: {' '.join(argv)}"
        )
    return result.stdout


def build_spa(host: Host, argv: list[str]) -> bytes:
    """The payload of the SPA packet the client would send, built but not sent (-T -B): for a
    test that replays it, or sends it from another source (send_payload)."""
    with tempfile.TemporaryDirectory(prefix="knocklab-fwknop-out-") as out:
        saved = Path(out) / "packet"
        send_spa(host, [*argv, "-T", "-B", str(saved)])
        return saved.read_bytes().strip()


def send_payload(
    host: Host,
    server: str,
    payload: bytes,
    port: int = SPA_PORT,
    source: str | None = None,
    *,
    spoofed: bool = False,
) -> None:
    """One UDP datagram holding `payload` from `host` (from `source`, one of its addresses) to
    `server`, a lab address: a captured SPA packet sent again, or junk. With `spoofed`, `source`
    may be any address (a whole forged packet through a raw socket)."""
    if spoofed:
        if source is None:
            raise ValueError("a spoofed packet needs a source")
        send_spoofed(host, server, [spoofed_packet(source, server, port, "udp", payload)])
        return
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = host.socket(family, socket.SOCK_DGRAM)
    try:
        if source is not None:
            sock.bind((source, 0))
        sock.sendto(payload, (server, port))
    finally:
        sock.close()


def time_offset(seconds: int) -> tuple[str, ...]:
    """The client's options that move its packet's timestamp by `seconds` (for fwknop_argv's
    `extra`): a stale packet, behind or ahead."""
    if seconds > 0:
        return ("--time-offset-plus", f"{seconds}sec")
    if seconds < 0:
        return ("--time-offset-minus", f"{-seconds}sec")
    return ()
