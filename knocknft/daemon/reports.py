"""What the daemon says: its log lines for effects, its audit events, and how a source is shown
in them (knockd's `addr (name)` under -l). A base of knocknft.daemon.executor.Daemon, which
carries the effects out; the lines are rate-limited by its `grant_log`.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from knocknft.config import IPAddress
from knocknft.core.decide import LogLine, MarkOneTime, RefusedSource
from knocknft.core.grants import Grant
from knocknft.core.sources import as_shown
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.loglimit import KnockLog
from knocknft.daemon.names import Labelled, NameCache

log = logging.getLogger("knocknft")

_ADDRESS = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING}


@dataclass
class DaemonCounters:
    commands: int = 0
    refreshed: int = 0
    ipv6_ignored: int = 0
    odd_addresses_refused: int = 0


class DaemonReports:
    """The daemon's log and audit lines; Daemon sets these attributes."""

    names: NameCache | None
    audit: EventLog | None
    grant_log: KnockLog
    counters: DaemonCounters

    def _log_line(self, line: LogLine) -> None:
        if line.limited and not self.grant_log.allow():
            return
        args = (self._who(a) if isinstance(a, _ADDRESS) else a for a in line.args)
        log.log(_LEVELS[line.level], line.text, *args)

    def _refused_source(self, effect: RefusedSource) -> None:
        self.counters.odd_addresses_refused += 1
        if self.grant_log.allow():
            log.warning(
                "%s: %s: sequence completed from %s: never granted, no command run (forged?)",
                self._who(effect.source),
                effect.door,
                effect.reason,
            )

    def _who(self, source: IPAddress | str) -> object:
        """The source as log lines show it: `addr`, or knockd's `addr (name)` under -l."""
        if isinstance(source, str):  # pending stops keep the address as text
            if self.names is None:
                return source
            try:
                source = ipaddress.ip_address(source)
            except ValueError:
                return source
        source = as_shown(source)  # ::ffff:198.18.0.2 is 198.18.0.2
        if self.names is None:
            return source
        return Labelled(source, self.names)

    def _report_grant(self, g: Grant) -> None:
        if self.grant_log.allow():
            log.info(
                "%s: %s: granted %s for %ds", self._who(g.address), g.door, g.service, g.timeout
            )
        self._audit("grant", source=g.address, door=g.door, service=g.service, timeout=g.timeout)

    def _report_one_time(self, effect: MarkOneTime) -> None:
        # Marked already, before the grant (see onetime.mark_first): what is left is to say so.
        door, path, line = effect.door, effect.path, effect.line
        log.info("%s: one-time sequence on line %d of %s used", door, line, path)
        self._audit("one_time_used", door=door, file=path, line=line)

    def _audit(self, name: str, **fields: object) -> None:
        # Only ever called for rare events, never per knock: off, it costs one comparison.
        if self.audit is not None:
            self.audit.write(name, **fields)
