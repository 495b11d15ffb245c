"""The pure core: what knocknft decides, with no I/O at all.

Holds the knock engine (sequence state per source) and the events it reports, the decide step
(engine events -> the effects the daemon carries out: grants, revokes, commands, stop records,
log lines, audit events), nft transactions as typed data and their one renderer (transaction),
the checks of the values they hold (nftvalues), the ruleset (config -> the transaction of our
table) and the grant model (allowlist elements, their set names, their transactions, parsing a
listing).

May import: `knocknft.config`, `knocknft.errors` and the standard library's pure modules. Never a
socket, a process, a file or a clock: a test checks this from the import graph.
"""
