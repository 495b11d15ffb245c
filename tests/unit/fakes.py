"""Stand-ins for the daemon's adapters, for unit tests of what it decides to do."""

from __future__ import annotations

from knocknft.config import Config
from knocknft.core.ruleset import ruleset_transaction
from knocknft.nft.fake import FakeNft


def loaded_nft(config: Config) -> FakeNft:
    """A FakeNft with `config`'s table loaded, as `knocknft apply` leaves the kernel; what it
    records starts after that."""
    nft = FakeNft()
    nft.apply(ruleset_transaction(config))
    nft.transactions.clear()
    nft.scripts.clear()
    return nft


class RecordingRunner:
    """A `CommandRunner` that records commands instead of running them."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def submit(self, door: str, command: str, client: str = "") -> None:
        self.commands.append(command)

    def close(self) -> None:
        pass
