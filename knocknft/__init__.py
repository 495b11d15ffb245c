"""knocknft: port knocking for nftables, the successor to knockd."""

__version__ = "0.1.0"
