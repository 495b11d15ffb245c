"""An fwknopd setup moved over with `knocknft import` serves the same clients: Debian's fwknop
client, with the keys from access.conf, on the SPA port from fwknopd.conf, opens the port its
stanza grants, for its own address only, until FW_ACCESS_TIMEOUT; a stanza left out (no HMAC
key) opens nothing, and nor does the old default port.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from knocklab.fwknop import FwknopKeys, fwknop_argv, send_spa
from knocklab.lab import Lab, Listener
from tests.integration.support import BIN, NEEDS_FWKNOP, OTHER_V4, running, wait_reachable

pytestmark = NEEDS_FWKNOP

SPA_PORT = 40001


def reachable(lab: Lab, source: str = Lab.CLIENT_V4) -> bool:
    return lab.client.tcp_reachable(Lab.SERVER_V4, 22, timeout=0.5, source=source)


def test_an_imported_fwknopd_setup_serves_its_clients(lab: Lab, tmp_path: Path) -> None:
    laptop, legacy = FwknopKeys.random("sha512"), FwknopKeys.random()
    setup = tmp_path / "fwknop"
    setup.mkdir()
    (setup / "access.conf").write_text(
        f"SOURCE: {Lab.CLIENT_V4}, {OTHER_V4}\n"
        "OPEN_PORTS tcp/22\n"
        f"KEY_BASE64 {laptop.key_base64}\n"
        f"HMAC_KEY_BASE64 {laptop.hmac_key_base64}\n"
        "HMAC_DIGEST_TYPE SHA512\n"
        "FW_ACCESS_TIMEOUT 3\n"
        "\n"
        "SOURCE ANY\n"
        "OPEN_PORTS tcp/22\n"
        f"KEY_BASE64 {legacy.key_base64}\n"
    )
    (setup / "fwknopd.conf").write_text(
        f"PCAP_INTF {lab.server.ifname};\nPCAP_FILTER udp port {SPA_PORT};\n"
    )
    config = tmp_path / "config.yaml"
    imported = subprocess.run(
        [str(BIN / "knocknft"), "import", str(setup / "access.conf"), "-o", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert f"{setup / 'access.conf'}:8: stanza #2 SOURCE: it has no HMAC_KEY" in imported.stderr
    listener = Listener(lab.server, 22)
    lab.client.add_address(OTHER_V4)
    try:
        with running(lab, config, tmp_path / "daemon.log") as daemon:
            daemon.wait_for(f"SPA: udp port {SPA_PORT} read from NFLOG group 8")
            assert not reachable(lab)
            send_spa(lab.client, fwknop_argv(laptop, Lab.SERVER_V4, allow=Lab.CLIENT_V4))
            time.sleep(1)
            assert not reachable(lab), "fwknopd.conf moved the SPA port: 62201 is not heard"
            argv = fwknop_argv(laptop, Lab.SERVER_V4, allow=Lab.CLIENT_V4, port=SPA_PORT)
            send_spa(lab.client, argv)
            assert wait_reachable(lab, Lab.CLIENT_V4, time.monotonic() + 3), daemon.log()
            assert not reachable(lab, OTHER_V4), "the grant is for the address inside only"
            daemon.wait_for("fwknop-1: SPA request accepted")
            time.sleep(3.5)
            assert not reachable(lab), "closed after FW_ACCESS_TIMEOUT"
            send_spa(lab.client, fwknop_argv(legacy, Lab.SERVER_V4, allow=OTHER_V4, port=SPA_PORT))
            time.sleep(1)
            assert not reachable(lab, OTHER_V4), "the stanza left out opens nothing"
    finally:
        listener.close()
