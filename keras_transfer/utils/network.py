"""Knowing, quickly, whether downloads can work (offline machines must fail fast and clearly)."""

import os
import socket


class OfflineError(OSError):
    """Raised instead of a bare URL failure or minutes of retries when a download cannot work."""


def is_online(host="storage.googleapis.com", port=443, timeout=3.0):
    """True when `host:port` accepts a TCP connection within `timeout` seconds.

    `KERAS_TRANSFER_OFFLINE=1` forces False (for tests and air-gapped clusters).
    """
    if os.environ.get("KERAS_TRANSFER_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
