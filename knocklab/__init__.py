"""Test plumbing, outside the wheel: network-namespace labs and packet generators for the tests,
the benchmarks and the demo. Never imported by knocknft itself.

    lab       namespaces joined by veth, their hosts (sockets, knocks, probes), a TCP listener
    daemons   programs under test in a namespace (LabDaemon, Debian's knockd) and their logs
    packets   hand-made TCP segments, spoofed SYNs and the paced, bounded sender (floods)
    fwknop    Debian's fwknop client with known keys: SPA packets sent, or built to send again
              (from any source, spoofed ones too)
    fwknopd   Debian's fwknopd on a config of its own (a knocknft door's equal), and its log

lab may import packets (a host sends hand-made segments); daemons and fwknop import lab (fwknop
packets too); fwknopd imports daemons and fwknop; packets imports nothing of knocklab's at run
time. knocklab imports knocknft, never the other way round.
"""
