"""The `knock` client: knock sequences, named profiles, and signed SPA packets (knock --door).

May import: `knocknft.config` (port specs, the profiles' scalars), `knocknft.spa` (the signed
packet and key files, pure), `knocknft.errors`. Nothing of the server side.
"""
