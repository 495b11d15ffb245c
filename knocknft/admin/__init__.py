"""The admin's side: the `knocknft` command line, commit-confirmed apply and its watcher.

- `cli`: the typer app and the entry point; `cli_common`: what every command shares (exit codes,
  error reporting, the nft factory tests swap).
- `cli_config` (check, apply, confirm, guard), `cli_status` (status), `cli_grants` (open,
  close), `cli_run` (run), `cli_import` (import): the commands.
- `health`: whether the gate is in place (status's checks and exit codes); `status`: how
  status shows the gate, doors, grants and bans.
- `confirm`: commit-confirmed apply (state files, lock, rollback); `watcher`: the detached
  process that rolls back unless confirmed (`python -m knocknft.admin.watcher`).

The top layer: may import every other package of knocknft; nothing imports it.
"""
