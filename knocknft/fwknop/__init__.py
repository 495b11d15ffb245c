"""fwknop compatibility: an fwknopd setup (access.conf, and fwknopd.conf beside it) read with
fwknopd's own grammar, and the importer that turns it into knocknft YAML.

- `grammar`: the line grammar of both files (server/access.c of fwknop 2.6), access.conf's
  stanzas and its %include, %include_folder and %include_keys directives.
- `daemonconf`: fwknopd.conf's settings (server/config_init.c), and telling that file apart.
- `values`: one value's text to what it means to fwknopd (addresses, ports, keys, dates,
  command cycles).
- `keywords`: what each access.conf keyword does to the stanza being read.
- `stanza`: one stanza's directives checked as fwknopd checks them, into what an SPA door needs,
  or why knocknft cannot serve it.
- `writer`: the YAML, commented, with what was not mapped (`import_fwknop`, the entry point).

Pure: text in, text out; included files are read through the `IncludeReader` given. May import:
`knocknft.config`, `knocknft.errors`.
"""
