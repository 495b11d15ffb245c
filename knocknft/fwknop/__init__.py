"""fwknop compatibility: an fwknopd setup (access.conf, and fwknopd.conf beside it) read with
fwknopd's own grammar, and the importer that turns it into knocknft YAML.

- `grammar`: the line grammar of both files (server/access.c, server/config_init.c of fwknop
  2.6), access.conf's stanzas and its %include, %include_folder and %include_keys directives.
- `stanza`: one stanza's directives checked as fwknopd checks them, into what an SPA door needs,
  or why knocknft cannot serve it.
- `writer`: the YAML, commented, with what was not mapped (`import_fwknop`, the entry point).

Pure: text in, text out; included files are read through the `IncludeReader` given. May import:
`knocknft.config`, `knocknft.errors`.
"""
