"""The server's CPU and peak memory per process role, measured with psutil.

ScholarSource's `GET /api/health` names its processes by role: the Gunicorn master, the API
workers, the job pool and its slots. A `RoleSampler` reads each process's CPU times when a
scenario starts and when it ends, and its RSS every `interval` in between (peak RSS needs
sampling: psutil has no high-water mark for another process). This only works when the
server runs on this machine; otherwise `unavailable` says why and no number is invented.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

import httpx
import psutil

Roles = dict[str, list[int]]


def local_host(url: str) -> bool:
    """Whether `url` names this machine (a loopback address or one of its own)."""
    host = httpx.URL(url).host
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    own = {addr.address for nics in psutil.net_if_addrs().values() for addr in nics}
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback or a in own
               for a in addresses)


def roles_from_health(url: str) -> tuple[Roles | None, str | None]:
    """Pids by role from the server's /api/health, or (None, why not)."""
    if not local_host(url):
        return None, f"the server at {url} is not on this machine"
    try:
        processes = httpx.get(url.rstrip("/") + "/api/health", timeout=10).json()["processes"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None, "the server's /api/health does not list its processes"
    roles: Roles = {"master": [processes["master"]], "api": list(processes["api"]),
                    "pool": [processes["pool"]] if processes.get("pool") else [],
                    "slots": list(processes.get("slots") or [])}
    if not psutil.pid_exists(processes["master"]):
        return None, "the server's processes are not visible from here (another container?)"
    return roles, None


def roles_of_tree(master: int) -> Roles:
    """A server without /api/health (the baseline): the master and its children."""
    try:
        children = [p.pid for p in psutil.Process(master).children()]
    except psutil.Error:
        children = []
    return {"master": [master], "api": children}


class RoleSampler:
    """CPU seconds over a stretch of time and peak RSS, per role."""

    def __init__(self, roles: Roles, interval: float = 0.25) -> None:
        self.roles = roles
        self.interval = interval
        self.procs: dict[int, psutil.Process] = {}
        for pids in roles.values():
            for pid in pids:
                try:
                    self.procs[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
        self.cpu_before = self._cpu()
        self.peak_rss = {role: 0 for role in roles}
        self.peak_process_rss = {role: 0 for role in roles}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RoleSampler:
        self.cpu_before = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_after = self._cpu()
        self._rss()

    def _cpu(self) -> dict[int, float]:
        times = {}
        for pid, proc in self.procs.items():
            try:
                cpu = proc.cpu_times()
            except psutil.Error:
                continue  # gone: what it used since the last reading is lost, not guessed
            times[pid] = cpu.user + cpu.system
        return times

    def _rss(self) -> None:
        for role, pids in self.roles.items():
            total = 0
            for pid in pids:
                try:
                    rss = self.procs[pid].memory_info().rss
                except (psutil.Error, KeyError):
                    continue
                total += rss
                self.peak_process_rss[role] = max(self.peak_process_rss[role], rss)
            self.peak_rss[role] = max(self.peak_rss[role], total)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._rss()

    def result(self, seconds: float) -> dict[str, dict[str, Any]]:
        """Per role: processes, CPU seconds, CPU in cores (seconds / wall seconds), peak RSS
        of the role in all and of its largest process."""
        out: dict[str, dict[str, Any]] = {}
        for role, pids in self.roles.items():
            cpu = sum(self.cpu_after.get(p, 0.0) - self.cpu_before.get(p, 0.0) for p in pids
                      if p in self.cpu_after and p in self.cpu_before)
            out[role] = {"processes": len(pids), "cpu_s": round(cpu, 3),
                         "cpu_cores": round(cpu / max(seconds, 1e-9), 3),
                         "rss_peak_bytes": self.peak_rss[role],
                         "rss_peak_process_bytes": self.peak_process_rss[role]}
        return out
