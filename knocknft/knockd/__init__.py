"""knockd compatibility: knockd.conf read with knockd's grammar, and the importer that turns
one into knocknft YAML.

Pure: text in, config or text out. May import: `knocknft.config`, `knocknft.errors`.
"""
