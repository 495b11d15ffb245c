"""Single packet authorization (SPA): one UDP packet, authenticated, asks for a door to open.

Holds the request and its rejections (request), the replay cache (replay), fwknop 2.6's
Rijndael + HMAC packets (fwknop), knocknft's own Ed25519-signed packets (signed) and their
clients' key files (keys), and the verifier that judges a packet in fwknopd's order (verify).
The daemon hands it a packet's payload, its source and the time, and carries out what comes
back.

Pure, like knocknft.core: no socket, no file, no clock (`now` is passed in), no logging. May import:
`knocknft.config`, `knocknft.errors`, `cryptography` and the standard library's pure modules; a
test checks this from the import graph. Keys are secrets: nothing here puts one in a message.
"""
