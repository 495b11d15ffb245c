"""The SPA port's rule: every packet to it logged whole to the daemon, then dropped.

Pure, like knocknft.core.ruleset, which puts these rules where knocks are judged (after the bans
and the established accept, on the knock interfaces). An SPA packet is one UDP datagram to
options.spa_port, IPv4 or IPv6; it goes to its own NFLOG group (options.spa_nflog_group), copied
whole, so the daemon reads the payload while the knocks' group keeps its short copies. Nothing
listens on the port and nothing answers, whatever options.knock_reply says: a closed port's
reply would tell a scanner that something is there, and an SPA client waits for no answer.
The services SPA doors open are gated with every door's (Config.protected holds them).
"""

from __future__ import annotations

from knocknft.config import MAX_COMMENT_LENGTH, MAX_NFLOG_GROUP, MAX_PORT, Config, IPAddress
from knocknft.core.nftvalues import address, check_count, quoted

# fwknop's largest SPA packet is 1500 bytes of payload (MAX_SPA_PACKET_LEN); the copy also holds
# the IPv4 or IPv6 header, extension headers and the UDP header, with room to spare.
SPA_SNAPLEN = 2048


def spa_rules(config: Config, iif: str) -> list[str]:
    """The input chain's SPA rules: none without SPA doors; else one per distinct `target` of
    the SPA doors (one for all when a door has none), each logging and dropping."""
    doors = config.spa_doors
    if not doors:
        return []
    opts = config.options
    port = check_count(opts.spa_port, "a port", MAX_PORT)
    group = check_count(opts.spa_nflog_group, "an NFLOG group", MAX_NFLOG_GROUP)
    names = ",".join(d.name for d in doors)
    # The comment names the doors (the knock rules' do too); cut to what nft allows.
    comment = quoted(_short(f"spa: {names}"))
    log = f"log group {group} snaplen {SPA_SNAPLEN} queue-threshold 1"
    targets: list[IPAddress | None] = (
        [None]
        if any(d.target is None for d in doors)
        else sorted({d.target for d in doors if d.target is not None}, key=str)
    )
    return [f"{iif}{_daddr(t)}udp dport {port} {log} drop comment {comment}" for t in targets]


def _daddr(target: IPAddress | None) -> str:
    if target is None:
        return ""
    family = "ip" if target.version == 4 else "ip6"
    return f"{family} daddr {address(target)} "


def _short(text: str) -> str:
    return text if len(text) <= MAX_COMMENT_LENGTH else text[: MAX_COMMENT_LENGTH - 3] + "..."
