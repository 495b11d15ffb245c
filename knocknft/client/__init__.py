"""The `knock` client and its named profiles.

May import: `knocknft.config` (port specs), `knocknft.errors`. Nothing of the server side.
"""
