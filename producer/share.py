"""Offering a camera's DMA-BUFs to a consumer over a UNIX socket (SCM_RIGHTS).

The producer listens on a path; each consumer that connects gets one
message: a JSON description of the camera (device, size, format, slot
sizes) with the slots' DMA-BUF fds attached, in slot order. A consumer
that queues those fds as DMABUF capture buffers gets the zero-copy path.
"""

import json
import os
import socket
import stat

MAX_FDS = 32  # VCAM_MAX_FRAMES


class ShareError(Exception):
    """The socket cannot be offered or reached: one line for the user."""


class ShareServer:
    """A listening UNIX socket that hands out the camera's DMA-BUF fds."""

    def __init__(self, path: str, description: dict, fds: list[int]):
        self.path = path
        self._message = json.dumps(description).encode()
        self._fds = list(fds)
        self._remove_stale(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind(path)
            self.sock.listen(8)
            self.sock.setblocking(False)
        except OSError as e:
            self.sock.close()
            raise ShareError(f"cannot listen on {path}: {e.strerror}") from None
        self.consumers = 0

    @staticmethod
    def _remove_stale(path: str) -> None:
        """A socket file nobody listens on is left over; anything else is not ours."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ShareError(f"cannot listen on {path}: it exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError:
            return
        finally:
            probe.close()
        raise ShareError(f"cannot listen on {path}: another producer is listening there")

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve(self) -> None:
        """Answer every consumer waiting to connect (call when the socket is readable)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            with conn:
                try:
                    conn.setblocking(True)
                    conn.settimeout(2.0)
                    socket.send_fds(conn, [self._message], self._fds)
                    self.consumers += 1
                except OSError:
                    pass  # the consumer went away; nothing to undo

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sock.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def receive(path: str, timeout: float = 10.0) -> tuple[dict, list[int]]:
    """Connect to a producer's socket: its camera description and DMA-BUF fds."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ShareError(f"no producer is listening on {path}") from None
        except OSError as e:
            raise ShareError(f"cannot connect to {path}: {e.strerror}") from None
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, MAX_FDS)
        except (OSError, TimeoutError) as e:
            raise ShareError(f"no answer from the producer on {path}: {e}") from None
    finally:
        sock.close()
    try:
        description = json.loads(message)
        if len(fds) != description["slots"]:
            raise ValueError("fd count does not match")
    except (ValueError, KeyError):
        for fd in fds:
            os.close(fd)
        raise ShareError(f"{path} did not answer like a vcam producer") from None
    return description, fds
