"""knockd compatibility: knockd.conf read with knockd's grammar, and the importer that turns one
into knocknft YAML.

- `grammar`: knockd.conf as knockd reads it, to a Config and knockd's [options].
- `recognizer`: which start/stop commands are firewall rules a grant can stand in for.
- `planner`: what each door's commands amount to, and which doors close another's rule.
- `writer`: the YAML, commented, with what was not mapped (`import_knockd`, the entry point).

Pure: text in, config or text out (a door's one-time file is read through the `read_file` given,
by default from disk; `grammar.load_any_config` reads a config file through knocknft.config's
loader, for every command that takes one). May import: `knocknft.config`, `knocknft.errors`.
"""
