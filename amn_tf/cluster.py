"""Ray, imported only when asked for: connecting to a cluster (or starting one here) with
one clear line when Ray is missing or the cluster cannot be reached."""

from __future__ import annotations

import socket

from amn_tf import rundirs


class RayError(rundirs.RunError):
    """Ray is missing or the cluster cannot be reached."""


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"--ray_address={address!r}: use 'local', 'auto' or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise RayError(f"cannot reach a Ray cluster at {address} ({error.strerror or error}); "
                       "start one with `ray start --head` or use --ray_address=local") from None


def init_ray(address: str):
    try:
        import ray
    except ImportError:
        raise RayError("--ray_address needs Ray: pip install -e '.[distributed]'") from None
    if address not in ("local", "auto"):
        _check_reachable(address)
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RayError(f"cannot connect to Ray at {address!r}: {str(error).splitlines()[0]}") from None
    return ray
