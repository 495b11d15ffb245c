"""Make the saved SPA packets the unit tests decode: Debian's real `fwknop` client builds each one
(`-T -B FILE`: built and saved, never sent) inside a lab namespace, with the keys in
tests/data/spa/keys.json. Writes tests/data/spa/cases.json: per packet, the client's options and
the time it was made, which the tests pass as `now` (a saved packet carries its timestamp).

Run as root: `PYTHONPATH=. .venv/bin/python scripts/spa_packets.py`. Rerunning makes new packets
(new random salts and stamps), and the tests follow cases.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from knocklab.fwknop import FwknopKeys, build_spa, fwknop_argv
from knocklab.lab import Lab, can_use_namespaces

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "spa"

# Test keys, published here on purpose: they open nothing anywhere but these tests.
KEYS = {
    "main": FwknopKeys(
        "71SQBa/hWIIn5BR5A/TZwlzvk/V1TzLNduvk/KERXbo=",
        "KNdfPqEG1a+cmScQAXZ1T3sl6mm4k1bJbraUbpEvV82YHTRrDeYtGhoJdGryg0jHeaQ/5OSZuooNd71Imu4FGA==",
    ),
    "other": FwknopKeys(
        "9PE8HFE8hhUNB1SUiBx6q6twaAqVPUKs5k0zNymFKZ8=",
        "wPP1egydt2PQonA+xz1xkOWcqu+grBXShFDEVGzNTiLA/x+Q5CLUJXWAx+HyJmpLbnC5VRbBApit7QctHnmiFw==",
    ),
}
# A KEY (not base64): the client's --key-rijndael, access.conf's KEY.
PASSPHRASE = "knock knock, who is there?"
CLIENT = Lab.CLIENT_V4

# name -> (keys, HMAC digest, -A, -a (None: -s), other options)
CASES: dict[str, tuple[str, str, str, str | None, tuple[str, ...]]] = {
    "sha256": ("main", "sha256", "tcp/22", CLIENT, ()),
    "md5": ("main", "md5", "tcp/22", CLIENT, ()),
    "sha1": ("main", "sha1", "tcp/22", CLIENT, ()),
    "sha384": ("main", "sha384", "tcp/22", CLIENT, ()),
    "sha512": ("main", "sha512", "tcp/22", CLIENT, ()),
    "sha3_256": ("main", "sha3_256", "tcp/22", CLIENT, ()),
    "sha3_512": ("main", "sha3_512", "tcp/22", CLIENT, ()),
    "inner_sha512": ("main", "sha256", "tcp/22", CLIENT, ("-m", "sha512")),
    "inner_md5": ("main", "sha256", "tcp/22", CLIENT, ("-m", "md5")),
    "two_ports": ("main", "sha256", "tcp/22,udp/53", CLIENT, ()),
    "outside_open": ("main", "sha256", "tcp/22,tcp/23", CLIENT, ()),
    "timeout_60": ("main", "sha256", "tcp/22", CLIENT, ("-f", "60")),
    "timeout_3600": ("main", "sha256", "tcp/22", CLIENT, ("-f", "3600")),
    "any_address": ("main", "sha256", "tcp/22", None, ()),
    "other_address": ("main", "sha256", "tcp/22", "198.18.7.7", ()),
    "other_keys": ("other", "sha256", "tcp/22", CLIENT, ()),
    "nat": ("main", "sha256", "tcp/22", CLIENT, ("-N", "198.18.0.9:22")),
    "stale": ("main", "sha256", "tcp/22", CLIENT, ("--time-offset-minus", "300sec")),
    "passphrase": ("main", "sha256", "tcp/22", CLIENT, ()),
}


def main() -> None:
    why = can_use_namespaces()
    if why:
        raise SystemExit(f"spa_packets: {why}")
    DATA.mkdir(parents=True, exist_ok=True)
    cases: dict[str, dict[str, object]] = {}
    with Lab("spapkt") as lab:
        for name, (keys_name, digest, access, allow, extra) in CASES.items():
            keys = KEYS[keys_name]
            keys = FwknopKeys(keys.key_base64, keys.hmac_key_base64, digest)
            argv = fwknop_argv(keys, lab.SERVER_V4, access=access, allow=allow, extra=extra)
            if name == "passphrase":
                index = argv.index("--key-base64-rijndael")
                argv[index : index + 2] = ["--key-rijndael", PASSPHRASE]
            made_at = int(time.time())
            payload = build_spa(lab.client, argv)
            (DATA / f"{name}.spa").write_bytes(payload)
            cases[name] = {
                "keys": keys_name,
                "hmac_digest": digest,
                "access": access,
                "allow": allow,
                "options": list(extra),
                "made_at": made_at,
            }
    keys_out = {
        name: {"key_base64": k.key_base64, "hmac_key_base64": k.hmac_key_base64}
        for name, k in KEYS.items()
    }
    keys_out["passphrase"] = {"key": PASSPHRASE, "hmac_key_base64": KEYS["main"].hmac_key_base64}
    (DATA / "keys.json").write_text(json.dumps(keys_out, indent=2) + "\n", encoding="utf-8")
    (DATA / "cases.json").write_text(json.dumps(cases, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} packets to {DATA}")


if __name__ == "__main__":
    main()
