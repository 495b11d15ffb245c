"""The configuration: frozen dataclasses for options and doors, and the YAML parser that builds them
keeping every key's line number, so each error can say file:line and how to fix it.

- `model`: the dataclasses (Config, Options, Door, PortSpec, ...), defaults and limits.
- `scalars`: one value's text to a model value (parse_duration, parse_port_spec, ...); `Invalid`;
  `format_seconds` for messages.
- `walker`: the Walker over PyYAML's node graph, collecting located errors and warnings.
- `options`, `doors`: the two sections' parsers and the checks across them.
- `loader`: parse_config, load_config, read_config_text.

Pure except `loader`, which reads the config file and the doors' one-time-sequences files (unless
given a `read_file`). May import: `knocknft.errors`, pyyaml, the standard library; nothing else of
knocknft. This module only re-exports the names the rest of knocknft uses.
"""

from knocknft.config.doors import DOOR_KEYS, ReadFile
from knocknft.config.loader import (
    load_config,
    open_one_time_file,
    parse_config,
    read_config_text,
    read_text_file,
)
from knocknft.config.model import (
    DEFAULT_CMD_TIMEOUT,
    DEFAULT_CONFIG_PATH,
    DEFAULT_GRANT_MARK,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_SEQ_TIMEOUT,
    DEFAULT_STATE_DIR,
    DOOR_NAME_RE,
    IFNAME_RE,
    MAX_ATTEMPTS_CEILING,
    MAX_RATE,
    MAX_SEQUENCE_LENGTH,
    RATE_UNIT_SECONDS,
    TABLE_NAME_RE,
    TCP_FLAG_BITS,
    Config,
    Door,
    IPAddress,
    IPNetwork,
    ListenAddress,
    LoadedConfig,
    OneTimeSequence,
    Options,
    PortSpec,
    Protocol,
    RateLimit,
    RateUnit,
    TcpFlags,
)
from knocknft.config.options import OPTION_KEYS
from knocknft.config.scalars import (
    Invalid,
    format_seconds,
    one_time_line_starts,
    parse_abs_path,
    parse_address,
    parse_bool,
    parse_duration,
    parse_int,
    parse_listen_address,
    parse_network,
    parse_one_time_line,
    parse_port_spec,
    parse_rate,
    parse_tcpflags,
    unused_one_time_lines,
)
from knocknft.config.walker import Walker, compose_yaml

__all__ = [
    "DEFAULT_CMD_TIMEOUT",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_GRANT_MARK",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_SEQ_TIMEOUT",
    "DEFAULT_STATE_DIR",
    "DOOR_KEYS",
    "DOOR_NAME_RE",
    "IFNAME_RE",
    "MAX_ATTEMPTS_CEILING",
    "MAX_RATE",
    "MAX_SEQUENCE_LENGTH",
    "OPTION_KEYS",
    "RATE_UNIT_SECONDS",
    "TABLE_NAME_RE",
    "TCP_FLAG_BITS",
    "Config",
    "Door",
    "IPAddress",
    "IPNetwork",
    "Invalid",
    "ListenAddress",
    "LoadedConfig",
    "OneTimeSequence",
    "Options",
    "PortSpec",
    "Protocol",
    "RateLimit",
    "RateUnit",
    "ReadFile",
    "TcpFlags",
    "Walker",
    "compose_yaml",
    "format_seconds",
    "load_config",
    "one_time_line_starts",
    "open_one_time_file",
    "parse_abs_path",
    "parse_address",
    "parse_bool",
    "parse_config",
    "parse_duration",
    "parse_int",
    "parse_listen_address",
    "parse_network",
    "parse_one_time_line",
    "parse_port_spec",
    "parse_rate",
    "parse_tcpflags",
    "read_config_text",
    "read_text_file",
    "unused_one_time_lines",
]
