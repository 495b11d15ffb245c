"""`knocknft keygen`: an Ed25519 key pair for a client of a public-key SPA door."""

from __future__ import annotations

import getpass
import os
import re
import socket
from pathlib import Path
from typing import Annotated

import typer

from knocknft.admin.cli_common import EXIT_FAILURE, EXIT_INVALID, fail
from knocknft.client.profiles import default_key_path
from knocknft.config import DOOR_NAME_RE
from knocknft.files import write_atomic

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()

PUBLIC_SUFFIX = ".pub"


def default_client_name() -> str:
    """user-host, made into a name the config takes (letters, digits, _ . -; at most 32)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "client"
    raw = f"{user}-{socket.gethostname().split('.')[0]}"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", raw).lstrip("_.-")[:32]
    return name or "client"


@commands.command(
    "keygen",
    epilog=(
        "Example: knocknft keygen --name alice-laptop, then paste the printed lines under the "
        "door's clients: on the server, knocknft check and reload (systemctl reload knocknft), "
        "and knock with: knock --door ssh server.example.org"
    ),
)
def keygen(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the private key to PATH (0600) and the public key to PATH.pub. "
            "Default: ~/.config/knocknft/spa_ed25519 ($XDG_CONFIG_HOME is honoured), where "
            "`knock` looks for it.",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="The client's name in the printed config lines: what the server's log, audit "
            "and metrics will call this key. Default: USER-HOST.",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Replace PATH and PATH.pub if they exist (the old key is lost)."
        ),
    ] = False,
) -> None:
    """Write an Ed25519 key pair for knocking on a public-key SPA door.

    Run it on the client, as the user who will knock. The private key (PEM, PKCS#8,
    unencrypted, mode 0600) stays there and signs each request `knock` sends; the public key
    (PATH.pub: one line, base64 of its 32 bytes) goes into the server's config, under the
    door's clients:. The server holds only public keys, so a stolen server config lets nobody
    knock: each client has its own key, revoked or expired on its own (revoked: true,
    expires: YYYY-MM-DD), on the next reload.

    Prints the lines to paste into the server's config on standard output, and the files
    written and the key's id (the first 8 bytes of its SHA-256, as each packet names its key)
    on standard error. An existing PATH or PATH.pub is never overwritten without --force.

    Exits 0 when both files were written, 1 when they could not be, 2 when NAME is not a
    usable client name or PATH exists.
    """
    path = output or default_key_path()
    public = path.with_name(path.name + PUBLIC_SUFFIX)
    client = default_client_name() if name is None else name
    if not DOOR_NAME_RE.match(client):
        fail(
            EXIT_INVALID,
            f"--name {client!r} is not a client name the config takes: start with a letter or "
            "digit; use letters, digits, _ . - (at most 32)",
        )
    if not force:
        for existing in (path, public):
            if os.path.lexists(existing):
                fail(EXIT_INVALID, f"{existing} exists: give --force to replace it, or -o PATH")
    # Here, not at the top: every knocknft command (the daemon's `run` too) loads this module,
    # and cryptography costs a few MiB of memory that only keygen and SPA doors need.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from knocknft.spa.keys import fingerprint, private_key_pem, public_key_line

    private_key = Ed25519PrivateKey.generate()
    line = public_key_line(private_key)
    try:
        # A fresh directory for keys is private, as ssh-keygen makes ~/.ssh.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, private_key_pem(private_key), new_mode=0o600)
        write_atomic(public, line + "\n", new_mode=0o644)
    except OSError as exc:
        fail(EXIT_FAILURE, f"cannot write {exc.filename or path}: {exc.strerror or exc}")
    typer.echo(f"wrote {path} (private, 0600) and {public}", err=True)
    typer.echo(f"key id {fingerprint(private_key)}", err=True)
    typer.echo(
        "# In the server's config, under the door (doors: NAME:); then knocknft check, and reload\n"
        "clients:\n"
        f"  {client}:\n"
        f'    public_key: "{line}"'
    )
