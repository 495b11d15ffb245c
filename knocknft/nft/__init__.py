"""The libnftables adapter: every ruleset change and listing goes through here.

Holds the `Nft` interface and `LibNft`, the queries on our table, applying the config and the
last-known-good copy the boot guard loads.

May import: `knocknft.core`, `knocknft.netlink`, `knocknft.config`, `knocknft.errors`,
`knocknft.files`, the distribution's `nftables` binding.
"""
