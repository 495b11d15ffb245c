"""The repository's scripts: the demo, and what `make install`, `make deb` and `make schema` run
(gendocs and the generators it uses, install, deb). They may import knocknft; knocknft never
imports them.
"""
