"""FakeNft behaves as nf_tables does for what knocknft asks of it; the same steps against the
kernel are tests/integration/test_fake.py."""

from __future__ import annotations

import ipaddress

import pytest

from knocknft.config import PortSpec, parse_config
from knocknft.core.grants import Grant, grant_transaction, revoke_transaction
from knocknft.core.ruleset import allow_sets, input_chain, ruleset_transaction
from knocknft.core.transaction import Rule, SavedTable, Table, Transaction
from knocknft.errors import NftError, TableMissing
from knocknft.nft.fake import FakeNft
from knocknft.nft.queries import chain_names, read_grants, table_exists, table_listed

CONFIG = parse_config(
    "doors:\n  ssh:\n    sequence: [7000, 9000/udp, 8000]\n    open: [22]\n    open_for: 1m\n"
).config
A = ipaddress.ip_address("198.18.0.2")
SSH = PortSpec(22)


def test_a_reapplied_ruleset_keeps_the_grants_and_their_time() -> None:
    now = [0.0]
    nft = FakeNft(clock=lambda: now[0])
    nft.apply(ruleset_transaction(CONFIG))
    nft.grant("knocknft", [Grant(A, SSH, "ssh", 30)])
    now[0] = 10.0
    nft.apply(ruleset_transaction(CONFIG))
    (grant,) = read_grants(nft, "knocknft")
    assert (grant.door, grant.timeout, grant.expires) == ("ssh", 30, 20)
    now[0] = 31.0
    assert read_grants(nft, "knocknft") == [], "an element ends with its timeout"


def test_a_refresh_restarts_the_timer_and_a_revoke_removes_it() -> None:
    now = [0.0]
    nft = FakeNft(clock=lambda: now[0])
    nft.apply(ruleset_transaction(CONFIG))
    nft.grant("knocknft", [Grant(A, SSH, "ssh", 30)])
    now[0] = 20.0
    nft.grant("knocknft", [Grant(A, SSH, "ssh", 30)])
    assert [g.expires for g in read_grants(nft, "knocknft")] == [30]
    nft.apply(revoke_transaction("knocknft", [(A, SSH)]))
    nft.apply(revoke_transaction("knocknft", [(A, SSH)]))  # gone already: still fine
    assert read_grants(nft, "knocknft") == []


def test_a_failing_transaction_changes_nothing() -> None:
    nft = FakeNft()
    nft.apply(ruleset_transaction(CONFIG))
    allow4 = allow_sets("knocknft")[0]
    with pytest.raises(NftError, match="busy"):  # a set a rule names is not deleted
        nft.apply(grant_transaction("knocknft", [Grant(A, SSH, "ssh", 30)]).delete(allow4))
    assert read_grants(nft, "knocknft") == [] and chain_names(nft, "knocknft") == [
        "input",
        "prerouting",
    ]
    with pytest.raises(NftError, match="No such file"):
        nft.apply(Transaction().add(Rule(input_chain("other"), "accept")))
    assert nft.transactions == [ruleset_transaction(CONFIG)], "only what the kernel took"


def test_reads_of_a_missing_table() -> None:
    nft = FakeNft()
    assert not table_listed(nft, "knocknft") and not table_exists(nft, "knocknft")
    assert chain_names(nft, "knocknft") == []
    with pytest.raises(TableMissing, match="not loaded"):
        read_grants(nft, "knocknft")


def test_the_text_listing_loads_back_as_the_same_table() -> None:
    nft = FakeNft()
    nft.apply(ruleset_transaction(CONFIG))
    nft.grant("knocknft", [Grant(A, SSH, "ssh", 30)])
    listing = nft.list_text("list table inet knocknft")
    other = FakeNft()
    other.apply(Transaction().add(SavedTable(Table("knocknft"), listing)))
    assert other.list_text("list table inet knocknft") == listing
    assert read_grants(other, "knocknft") == [], "a listing holds no elements"


def test_it_refuses_when_told_and_records_what_it_checked() -> None:
    nft = FakeNft()
    tx = ruleset_transaction(CONFIG)
    nft.check(tx)
    assert nft.checked == [tx] and nft.tables == {}, "a check commits nothing"
    nft.refuse("apply", NftError("Operation not permitted"))
    with pytest.raises(NftError, match="not permitted"):
        nft.apply(tx)
    nft.refuse("apply", None)
    nft.apply(tx)
    assert table_listed(nft, "knocknft")
