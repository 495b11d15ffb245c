"""Netlink: the kernel's sockets that knocknft speaks without libnftables.

Holds the NFLOG socket and its decoder (knock packets in), the packet decoder, the direct
set-element writer (the fast grant path) and the nf_tables notifications (what happens to our
table).

May import: `knocknft.core`, `knocknft.config`, `knocknft.errors`, pyroute2.
"""
