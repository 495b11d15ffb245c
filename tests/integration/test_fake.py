"""FakeNft answers as the kernel does: the same transactions, applied to both, read the same."""

from __future__ import annotations

import ipaddress
from typing import Any

from knocklab.lab import Lab, run_in_netns
from knocknft.config import PortSpec, load_config
from knocknft.core.grants import Grant, grant_transaction, revoke_transaction
from knocknft.core.ruleset import allow_sets, input_chain, ruleset_transaction
from knocknft.core.transaction import SavedTable, Table, Transaction
from knocknft.errors import KnocknftError
from knocknft.nft.fake import FakeNft
from knocknft.nft.libnft import Nft, NftSnapshots
from knocknft.nft.queries import chain_names, read_grants, table_exists, table_listed
from tests.integration.support import EXAMPLE_CONFIG

A = ipaddress.ip_address("198.18.0.2")
B = ipaddress.ip_address("2001:db8::2")
GRANTS = [Grant(A, PortSpec(22), "ssh", 300), Grant(B, PortSpec(53, "udp"), "dns", 60)]


def observe(nft: Nft, seen: list[Any]) -> None:
    grants: Any
    try:
        grants = [
            (str(g.address), str(g.service), g.door, g.timeout)
            for g in read_grants(nft, "knocknft")
        ]
    except KnocknftError as exc:
        grants = type(exc).__name__
    seen.append(
        (
            table_listed(nft, "knocknft"),
            table_exists(nft, "knocknft"),
            chain_names(nft, "knocknft"),
            grants,
        )
    )


def attempt(nft: Nft, tx: Transaction, seen: list[Any]) -> None:
    try:
        nft.apply(tx)
        seen.append("applied")
    except KnocknftError as exc:
        seen.append(type(exc).__name__)
    observe(nft, seen)


def steps(nft: NftSnapshots) -> list[Any]:
    """What knocknft does to its table, in order, with what the reads say after each."""
    config = load_config(EXAMPLE_CONFIG).config
    seen: list[Any] = []
    observe(nft, seen)
    attempt(nft, ruleset_transaction(config), seen)
    attempt(nft, grant_transaction("knocknft", GRANTS), seen)
    attempt(nft, ruleset_transaction(config), seen)  # a reload keeps the grants
    attempt(nft, revoke_transaction("knocknft", [(A, PortSpec(22)), (A, PortSpec(80))]), seen)
    # A set a rule names is not deleted, and the grant before it in the same transaction is
    # undone with it.
    attempt(nft, grant_transaction("knocknft", GRANTS).delete(allow_sets("knocknft")[0]), seen)
    attempt(nft, Transaction().delete(input_chain("knocknft")), seen)  # rules and all
    listing = nft.list_text("list table inet knocknft")
    attempt(nft, Transaction().delete(Table("knocknft")), seen)
    attempt(nft, grant_transaction("knocknft", GRANTS), seen)
    attempt(nft, Transaction().add(SavedTable(Table("knocknft"), listing)), seen)  # a rollback
    attempt(nft, grant_transaction("knocknft", GRANTS[:1]), seen)
    return seen


def test_the_fake_reads_as_the_kernel_does(lab: Lab) -> None:
    def in_kernel() -> list[Any]:
        from knocknft.nft.libnft import LibNft

        return steps(LibNft())

    kernel = run_in_netns(lab.server.netns, in_kernel)
    assert kernel == steps(FakeNft())
