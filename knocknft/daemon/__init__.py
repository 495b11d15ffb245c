"""`knocknft run`: the daemon that turns knocks into grants, commands and log lines.

Holds the executor (`Daemon`: carries out what `knocknft.core.decide` decides; its log and audit
lines in reports), the loop, knockd-style commands and their pending stop records, keeping the
table while it runs, stats, the metrics endpoint, sd_notify, the audit log, name lookups for log
lines, always_allow's host names resolved off the loop, one-time sequence marking, logging
set-up and detaching.

May import: `knocknft.core`, `knocknft.netlink`, `knocknft.nft`, `knocknft.knockd` (to read a
knockd.conf), `knocknft.config`, `knocknft.errors`, `knocknft.files`. Never `knocknft.admin`.
"""
