"""The admin's side: the `knocknft` command line, commit-confirmed apply and its watcher.

The top layer: may import every other package of knocknft; nothing imports it.
"""
