"""Logging set-up: stderr always (systemd's journal reads it), plus log_file and syslog as
configured. Lines keep knockd's shape (`198.18.0.2: ssh: OPEN SESAME`) so admins' greps work.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from knocknft.config import Options

LOGGER = "knocknft"


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        return text


def setup_logging(options: Options, verbose: bool = False, debug: bool = False) -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    # -v adds the per-knock detail (broken sequences, evictions); -D adds every packet too.
    logger.setLevel(logging.DEBUG if verbose or debug else logging.INFO)
    logger.propagate = False
    stderr = logging.StreamHandler()
    stderr.setFormatter(_StderrFormatter())
    logger.addHandler(stderr)
    if options.log_file is not None:
        logger.addHandler(file_handler(options.log_file))
    if options.syslog:
        try:
            syslog = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
            syslog.setFormatter(logging.Formatter("knocknft[%(process)d]: %(message)s"))
            logger.addHandler(syslog)
        except OSError as exc:
            logger.warning("syslog is unavailable (%s); logging to stderr only", exc)
    return logger


def file_handler(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    # WatchedFileHandler reopens the file after logrotate moves it.
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    return handler
