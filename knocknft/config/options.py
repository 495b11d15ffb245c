"""The `options:` section's parser, and the one check of options against the doors (the knock rate
limit's burst). Pure: walks YAML nodes, returns an Options.
"""

from __future__ import annotations

import yaml

from knocknft.config.doors import ReadFile
from knocknft.config.model import (
    DEFAULT_GRANT_MARK,
    DEFAULT_MAX_ATTEMPTS,
    IFNAME_RE,
    KNOCK_REPLIES,
    MAX_ALWAYS_ALLOW,
    MAX_ATTEMPTS_CEILING,
    MAX_NFLOG_GROUP,
    MAX_PORT,
    MAX_RATE,
    MAX_SPA_REPLAY_CACHE,
    MAX_SPA_WINDOW,
    MAX_TIMEOUT_SECONDS,
    TABLE_NAME_RE,
    Door,
    HostInterfaces,
    IPNetwork,
    Options,
    RateLimit,
)
from knocknft.config.scalars import (
    Invalid,
    parse_abs_path,
    parse_bool,
    parse_duration,
    parse_int,
    parse_listen_address,
    parse_rate,
)
from knocknft.config.trusted import parse_trusted, parse_trusted_file, split_trusted
from knocknft.config.walker import Walker

OPTION_KEYS = (
    "nflog_group",
    "table",
    "log_file",
    "syslog",
    "interfaces",
    "late_interfaces",
    "always_allow",
    "always_allow_file",
    "state_dir",
    "max_attempts",
    "knock_rate_limit",
    "knock_rate_burst",
    "metrics",
    "event_log",
    "grant_mark",
    "knock_reply",
    "spa_port",
    "spa_nflog_group",
    "spa_window",
    "spa_replay_cache",
)


def parse_options(  # noqa: C901, PLR0912 - one branch per option key, each with its own message
    w: Walker,
    node: yaml.Node | None,
    host: HostInterfaces | None = None,
    read_file: ReadFile | None = None,
) -> Options:
    """The options; with `host`, `interfaces` must name interfaces it has (see check_interfaces).
    `always_allow_file` is read through `read_file` (without one, its entries are not read)."""
    if node is None or node.tag == "tag:yaml.org,2002:null":
        return Options()
    entries = w.mapping(node, "options", OPTION_KEYS)
    values: dict[str, object] = {}
    for name, (_, value) in entries.items():
        if name in ("knock_rate_limit", "knock_rate_burst", "always_allow", "always_allow_file"):
            continue  # one value of two keys: _parse_rate_limit, _parse_always_allow
        key = f"options.{name}"
        parsed: object
        if name in ("nflog_group", "spa_nflog_group"):
            parsed = w.scalar(value, key, lambda t: parse_int(t, 0, MAX_NFLOG_GROUP))
        elif name == "spa_port":
            parsed = w.scalar(value, key, lambda t: parse_int(t, 1, MAX_PORT))
        elif name == "spa_window":
            parsed = w.scalar(value, key, lambda t: parse_duration(t, MAX_SPA_WINDOW))
        elif name == "spa_replay_cache":
            parsed = w.scalar(value, key, lambda t: parse_int(t, 1, MAX_SPA_REPLAY_CACHE))
        elif name == "table":
            parsed = w.scalar(value, key, _parse_table_name)
        elif name in ("log_file", "state_dir", "event_log"):
            parsed = w.scalar(value, key, parse_abs_path)
        elif name == "syslog":
            parsed = w.scalar(value, key, parse_bool)
        elif name == "max_attempts":
            parsed = w.scalar(value, key, _parse_max_attempts)
        elif name == "metrics":
            parsed = listen = w.scalar(value, key, parse_listen_address)
            if listen is not None and not listen.host.is_loopback:
                w.warn(
                    value,
                    key,
                    f"the metrics endpoint on {listen} is open to whoever reaches that address",
                    "serve it on 127.0.0.1 or [::1], or let your firewall guard the port",
                )
        elif name == "grant_mark":
            parsed = w.scalar(value, key, parse_grant_mark)
        elif name == "knock_reply":
            parsed = w.scalar(value, key, _parse_knock_reply)
        elif name in ("interfaces", "late_interfaces"):
            parsed = tuple(dict.fromkeys(w.scalar_list(value, key, _parse_ifname)))
        if parsed is not None:
            values[name] = parsed
    values.update(_parse_always_allow(w, entries, read_file))
    rate_limit = _parse_rate_limit(w, entries)
    if rate_limit is not None:
        values["knock_rate_limit"] = rate_limit
    options = Options(**values)  # type: ignore[arg-type]  # keys and types checked above
    _check_interfaces(w, entries, options, host)
    return options


def _parse_always_allow(
    w: Walker, entries: dict[str, tuple[yaml.Node, yaml.Node]], read_file: ReadFile | None
) -> dict[str, object]:
    """always_allow and the lines of always_allow_file: networks to always_allow, host names to
    always_allow_names. A bad line of the file is an error at that file's line."""
    trusted: list[IPNetwork | str] = []
    values: dict[str, object] = {}
    if "always_allow" in entries:
        trusted += w.scalar_list(entries["always_allow"][1], "options.always_allow", parse_trusted)
    if "always_allow_file" in entries:
        key = "options.always_allow_file"
        node = entries["always_allow_file"][1]
        path = w.scalar(node, key, parse_abs_path)
        if path is not None:
            values["always_allow_file"] = path
        if path is not None and read_file is not None:
            try:
                text = read_file(path)
            except (OSError, UnicodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
                w.error(
                    node,
                    key,
                    f"cannot read {path}: {why or exc}",
                    "a regular UTF-8 file, not a link, owned by root and writable by nobody else",
                )
            else:
                from_file, problems = parse_trusted_file(text, path, "always_allow_file")
                trusted += from_file
                w.errors += problems
    if len(trusted) > MAX_ALWAYS_ALLOW:
        w.error(
            entries["always_allow"][1] if "always_allow" in entries else None,
            "options.always_allow",
            f"more than {MAX_ALWAYS_ALLOW} entries",
        )
    networks, names = split_trusted(trusted)
    if networks:
        values["always_allow"] = networks
    if names:
        values["always_allow_names"] = names
    return values


def _check_interfaces(
    w: Walker,
    entries: dict[str, tuple[yaml.Node, yaml.Node]],
    options: Options,
    host: HostInterfaces | None,
) -> None:
    """late_interfaces must be named in interfaces; with a host, every other interface must
    exist there: a typo would leave knocks unheard (the services stay shut, and so does the
    door)."""
    listed = set(options.interfaces)
    if "late_interfaces" in entries:
        for path, item in w.items(entries["late_interfaces"][1], "options.late_interfaces"):
            if isinstance(item, yaml.ScalarNode) and item.value not in listed:
                w.error(
                    item,
                    path,
                    f"{item.value!r} is not in options.interfaces",
                    "add it to interfaces too: knocks are heard only on the interfaces listed "
                    "there; late_interfaces only lets them be missing for now",
                )
    if host is None or "interfaces" not in entries:
        return
    missing = set(host.missing(options.interfaces, options.late_interfaces))
    for path, item in w.items(entries["interfaces"][1], "options.interfaces"):
        if isinstance(item, yaml.ScalarNode) and item.value in missing:
            message, hint = host.explain(item.value, "interface")
            (w.error if host.strict else w.warn)(item, path, message, hint)


def _parse_rate_limit(
    w: Walker, entries: dict[str, tuple[yaml.Node, yaml.Node]]
) -> RateLimit | None:
    """knock_rate_limit and knock_rate_burst, two keys that make one RateLimit."""
    rate = burst = None
    if "knock_rate_limit" in entries:
        rate = w.scalar(entries["knock_rate_limit"][1], "options.knock_rate_limit", parse_rate)
    if "knock_rate_burst" in entries:
        key_node, value = entries["knock_rate_burst"]
        burst = w.scalar(value, "options.knock_rate_burst", lambda t: parse_int(t, 1, MAX_RATE))
        if "knock_rate_limit" not in entries:
            w.error(
                key_node,
                "options.knock_rate_burst",
                "knock_rate_burst has no rate to go with",
                "add knock_rate_limit: 20/second, or remove knock_rate_burst",
            )
    if rate is None:
        return None
    count, unit = rate
    # Twice the rate by default: room for a knock sequence and a retry of it.
    limit = RateLimit(count, unit, burst or 2 * count)
    if limit.bucket_seconds > MAX_TIMEOUT_SECONDS:
        # The kernel keeps each source's bucket in a set whose timeout must cover the refill.
        w.error(
            entries["knock_rate_limit"][1],
            "options.knock_rate_limit",
            f"{limit} takes {limit.bucket_seconds}s to refill: the kernel keeps a source's "
            f"bucket at most {MAX_TIMEOUT_SECONDS}s",
            "raise the rate or lower knock_rate_burst (burst x seconds per unit / rate is the "
            "refill time)",
        )
        return None
    return limit


def _parse_max_attempts(text: str) -> int:
    try:
        return parse_int(text, 1, MAX_ATTEMPTS_CEILING)
    except Invalid as exc:
        raise Invalid(
            exc.message,
            f"the default, {DEFAULT_MAX_ATTEMPTS}, keeps a spoofed flood's cost bounded; "
            "see the README for the memory each size takes",
        ) from None


def parse_grant_mark(text: str) -> int:
    try:
        mark = int(text.strip(), 0)
    except ValueError:
        mark = 0
    if mark <= 0 or mark >= 2**32 or mark & (mark - 1):
        raise Invalid(
            f"{text!r} is not a single mark bit",
            f"one bit as hex, e.g. {DEFAULT_GRANT_MARK:#x} (the default), clear of the bits "
            "other tools on this host mark with (WireGuard, Docker, Kubernetes...)",
        )
    return mark


def _parse_knock_reply(text: str) -> str:
    if text not in KNOCK_REPLIES:
        raise Invalid(
            f"{text!r} is not a knock reply",
            "drop (knock ports look filtered) or reject (they answer as closed ports do)",
        )
    return text


def _parse_table_name(text: str) -> str:
    if not TABLE_NAME_RE.match(text):
        raise Invalid(
            f"{text!r} is not a usable nft table name",
            "start with a letter; use letters, digits and _ (at most 32)",
        )
    return text


def _parse_ifname(text: str) -> str:
    if not IFNAME_RE.match(text):
        raise Invalid(
            f"{text!r} is not an interface name",
            "at most 15 characters; a trailing * matches a prefix, e.g. wg*",
        )
    return text


def check_rate_limit(
    w: Walker, options: Options, doors: list[Door], options_node: yaml.Node | None
) -> None:
    """The burst must let a knocker through a whole sequence at full speed."""
    limit = options.knock_rate_limit
    if limit is None or not isinstance(options_node, yaml.MappingNode):
        return
    steps = [(len(d.sequence), d.name) for d in doors]
    steps += [(len(seq.steps), d.name) for d in doors for seq in d.one_time]
    longest, door = max(steps, default=(0, ""))
    if limit.burst >= longest:
        return
    keys = {str(k.value): k for k, _ in options_node.value if isinstance(k, yaml.ScalarNode)}
    name = "knock_rate_burst" if "knock_rate_burst" in keys else "knock_rate_limit"
    w.error(
        keys.get(name),
        f"options.{name}",
        f"a burst of {limit.burst} knocks is less than door {door!r}'s {longest} steps: "
        "its knockers would be dropped before they finish",
        f"set knock_rate_burst to {2 * longest} or more",
    )
