"""fwknopd.conf, read with fwknopd's line grammar (server/config_init.c parse_config_file): the
settings the import takes the SPA port, window and interface from. Pure.

Unlike access.conf, a keyword keeps a `:` (there is no `KEYWORD:` form), a line fwknopd cannot
read is skipped (fwknopd logs it and goes on), and the last of a repeated setting counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from knocknft.fwknop.grammar import Directive, read_directives

# The daemon's file, which the import reads from beside the access.conf.
FWKNOPD_CONF = "fwknopd.conf"
# Settings of fwknopd.conf that no access.conf has: enough to tell the file.
FWKNOPD_KEYWORDS = frozenset(
    {
        "PCAP_INTF",
        "PCAP_FILTER",
        "ENABLE_PCAP_PROMISC",
        "MAX_SPA_PACKET_AGE",
        "ENABLE_SPA_PACKET_AGING",
        "ENABLE_DIGEST_PERSISTENCE",
        "ENABLE_UDP_SERVER",
        "UDPSERV_PORT",
        "ENABLE_IPT_FORWARDING",
        "FLUSH_IPT_AT_INIT",
        "IPT_INPUT_ACCESS",
        "FWKNOP_RUN_DIR",
        "ACCESS_FILE",
        "VERBOSE",
    }
)


def looks_like_fwknopd_conf(text: str) -> bool:
    """fwknopd.conf: a setting only it has, or (as shipped, every line commented) its
    settings' names in the comments."""
    directives = read_directives(text, "", [], keyword_colon=False)
    if directives:
        return any(d.keyword in FWKNOPD_KEYWORDS for d in directives)
    return "PCAP_FILTER" in text and "fwknopd" in text


@dataclass(frozen=True)
class FwknopdConf:
    """fwknopd.conf's settings: keyword -> its last line (fwknopd keeps the last)."""

    file: str
    settings: dict[str, Directive]


def read_fwknopd_conf(text: str, file: str) -> FwknopdConf:
    """fwknopd.conf with fwknopd's grammar. A line it cannot read, fwknopd skips with an error in
    its log; so does this (the settings the import maps are checked where they are used)."""
    settings: dict[str, Directive] = {}
    for directive in read_directives(text, file, [], keyword_colon=False):
        settings[directive.keyword] = directive
    return FwknopdConf(file, settings)
