"""Netlink: the kernel's sockets that knocknft speaks without libnftables.

- `base`: what every socket shares: the netlink and nfnetlink constants (taken from pyroute2),
  message and attribute walking and building, ack reading, socket buffer sizing.
- `packet`: decodes a logged IP packet into a knock (pure).
- `nflog_messages`: nfnetlink_log's names, its two messages, and config requests.
- `nflog_decoder`: the hot path, a recv() buffer of NFLOG messages to knock packets (pure).
- `nflog`: the NFLOG socket, knock packets in.
- `element`: one allowlist element in nf_tables' binary form, encoded and decoded (pure).
- `setelem`: the direct set-element writer, the fast grant path.
- `nftevents`: nf_tables notifications, what happens to our table.

May import: `knocknft.core`, `knocknft.config`, `knocknft.errors`, pyroute2.
"""
