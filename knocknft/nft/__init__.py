"""The libnftables adapter: every ruleset change and listing goes through here.

Holds the `Nft` interface and `LibNft` with its error classification (libnft), the import of the
distribution's binding, saying what is wrong when it fails (binding), the reads of our table
(queries), applying the config (operations), the last-known-good copy the boot guard loads
(lastgood), and `FakeNft`, the stateful stand-in tests use (fake, with script: nft text read back
into transactions).

May import: `knocknft.core`, `knocknft.netlink`, `knocknft.config`, `knocknft.errors`,
`knocknft.files`, the distribution's `nftables` binding.
"""
