"""Logging set-up: stderr always (systemd's journal reads it), plus log_file and syslog as
configured. Lines keep knockd's shape (`198.18.0.2: ssh: OPEN SESAME`) so admins' greps work.

Three levels of detail, knockd's flags: by default the daemon's life, every stage, open,
grant, grant end and command; `-v` (VERBOSE) adds what happens to attempts (broken sequences,
evictions); `-D` (DEBUG) adds every knock packet and the kernel's news of our table.

Each line reaches the journal and syslog with its priority: syslog's own, and on a stderr that
is systemd's journal stream (JOURNAL_STREAM names it) sd-daemon(3)'s `<N>` prefix on every
line, so `journalctl -p warning` finds the warnings and errors.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from knocknft.config import Options

LOGGER = "knocknft"
SYSLOG_SOCKET = "/dev/log"
# The log shows knocks (with -D every knock packet, so the sequence) and commands: private.
# Not even 0640 root:adm: adm reads /var/log for monitoring, which must not learn a sequence.
LOG_FILE_MODE = 0o600


# -v's detail: between INFO (always logged) and DEBUG (-D's packets and netlink news).
VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")

# syslog(3)'s priorities (sd-daemon(3) uses the same numbers), by the lowest level that has each.
_PRIORITIES = (
    (logging.CRITICAL, 2, "critical"),
    (logging.ERROR, 3, "error"),
    (logging.WARNING, 4, "warning"),
    (VERBOSE, 6, "info"),  # asked for with -v: shown where info is
    (0, 7, "debug"),
)


ERROR, WARNING = 3, 4  # for the CLI's own messages (admin.cli_common.say)


def priority(levelno: int) -> tuple[int, str]:
    """The syslog priority of a logging level: its number and SysLogHandler's name for it."""
    return next((number, name) for floor, number, name in _PRIORITIES if levelno >= floor)


def is_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether `stream` is the journal's stream that systemd gave this service: JOURNAL_STREAM
    says DEVICE:INODE of it, which is checked against the stream itself (a child whose stderr
    was redirected inherits the variable, not the stream)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


class _StderrFormatter(logging.Formatter):
    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            text = f"error: {text}"
        elif record.levelno >= logging.WARNING:
            text = f"warning: {text}"
        if not self.journal:
            return text
        # The journal takes each line as an entry of its own: each gets the prefix.
        prefix = f"<{priority(record.levelno)[0]}>"
        return "\n".join(prefix + line for line in text.split("\n"))


def setup_logging(options: Options, verbose: bool = False, debug: bool = False) -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG if debug else VERBOSE if verbose else logging.INFO)
    logger.propagate = False
    stderr = logging.StreamHandler()
    stderr.setFormatter(_StderrFormatter(journal=is_journal(sys.stderr)))
    logger.addHandler(stderr)
    if options.log_file is not None:
        logger.addHandler(file_handler(options.log_file))
    if options.syslog:
        problem = _syslog_problem(SYSLOG_SOCKET)
        if problem is None:
            syslog = _Syslog(
                address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
            syslog.setFormatter(logging.Formatter("knocknft[%(process)d]: %(message)s"))
            logger.addHandler(syslog)
        else:
            logger.warning("syslog is unavailable (%s); logging to stderr only", problem)
    return logger


def _syslog_problem(address: str) -> str | None:
    """Why nothing can be sent to the syslog socket, or None: tried now, as both socket types
    syslog daemons use, so a host without one gets one warning rather than a traceback a line."""
    error: OSError | None = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(address)
            except OSError as exc:
                error = exc
                continue
            return None
    return f"{address}: {error.strerror if error and error.strerror else error}"


class _Syslog(logging.handlers.SysLogHandler):
    """SysLogHandler that says once that syslog stopped taking lines (the daemon restarted,
    the socket went), on stderr, rather than printing a traceback for every line; stderr keeps
    every line all the same. Once lines go through again it would say so again."""

    failing = False  # said so; quiet until a line goes through again
    _failed = False  # the line being sent failed

    def mapPriority(self, level_name: str) -> str:  # noqa: N802 - logging's name
        # By number, so that VERBOSE (unknown to the handler's table, which would say
        # "warning") is info, and every level between two named ones is the lower's.
        number = logging.getLevelName(level_name)
        return priority(number)[1] if isinstance(number, int) else "warning"

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)  # a failure calls handleError, which never raises
        if not self._failed:
            self.failing = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self._failed = True
        if not self.failing:
            self.failing = True
            print(
                f"warning: syslog stopped taking lines ({sys.exc_info()[1]}); "
                "they still go to stderr",
                file=sys.stderr,
            )


class PrivateFileHandler(logging.handlers.WatchedFileHandler):
    """A log file created 0600 and never through a symlink, also when it is reopened after
    logrotate moved it (WatchedFileHandler's own open would create it 0644 under the usual
    umask). An existing file readable by others is made private, with a warning."""

    def _open(self) -> io.TextIOWrapper:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, LOG_FILE_MODE)
        try:
            mode = os.fstat(fd).st_mode & 0o777
            if mode & 0o007:
                os.fchmod(fd, mode & 0o770)
                print(
                    f"warning: {self.baseFilename} was readable by others (mode {mode:04o}); "
                    f"made it {mode & 0o770:04o}: it shows knocks",
                    file=sys.stderr,
                )
            return open(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise


def file_handler(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Reopened after logrotate moves it, private each time.
    handler = PrivateFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    return handler
