"""Compiles the XDP data plane with bcc, adopts pinned maps, attaches and unloads it.

Configuration reaches the C only as -D cflags (BuildOptions.cflags), so tests, the daemon
and the CLI compile the same source the same way. Maps are declared pinned (steer_maps.h):
when the pin directory already holds them, bcc opens those instead of creating new ones,
which is how a restarted daemon adopts the sessions and flows of the one before it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from steer_common import paths
from steer_common.shared import BACKEND_ID_MAX, BPF_DIR

log = logging.getLogger("steer.loader")

PIN_ROOT = Path(os.environ.get("STEER_PIN_ROOT", "/sys/fs/bpf/steer"))
RUN_DIR = paths.RUN_DIR
PINNED_MAPS = (
    "steer_vips",
    "steer_sessions",
    "steer_socks",
    "steer_backends",
    "steer_flows",
    "steer_rflows",
    "steer_sockflows",
    "steer_pending",
    "steer_asked",
    "steer_budget",
    "steer_sock_budgets",
    "steer_src_prefixes",
    "steer_stats",
    "steer_config",
    "steer_seal_keys",
    "steer_learned",
    "steer_learn_lost",
)
PROGRAMS = {"public": "steer_public", "internal": "steer_internal"}

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_MODES = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}


class LoaderError(RuntimeError):
    """The data plane could not be compiled, loaded, attached or found."""


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes how bpf/ compiles. Becomes -D cflags, nothing else."""

    instance: str = "default"
    max_sessions: int = 1 << 20
    max_flows: int = 1 << 20
    max_vips: int = 64
    max_backends: int = BACKEND_ID_MAX + 1
    # the ring of a session socket's flows (STEER_SESSION_FLOW_CAP): the most it may hold,
    # the oldest evicted; DataPlane.set_session_flow_cap lowers the cap at run time
    session_flow_ring: int = 64
    noflow_pps: int = 20000  # return packets/s to clients without a proven flow (relay-wide)
    noflow_burst: int = 2000
    # per session socket: Binding Requests/s from addresses without its proven flow, and
    # its packets/s to such addresses (steer_sock_budgets)
    session_check_pps: int = 50
    session_check_burst: int = 100
    session_noflow_pps: int = 100
    session_noflow_burst: int = 200
    # the learn ring (steer_learned) in 4 KiB pages, a power of two; tests make it small to
    # overflow it
    learn_ring_pages: int = 256
    explain: bool = False  # compile out every map write (steerctl explain)

    def __post_init__(self) -> None:
        if not self.instance or not all(c.isalnum() or c in "-_" for c in self.instance):
            raise ValueError(f"instance name {self.instance!r}: use letters, digits, - and _")
        p = self.learn_ring_pages
        if p < 1 or p & (p - 1):
            raise ValueError(f"learn_ring_pages {p}: a power of two")

    @property
    def pin_dir(self) -> Path:
        return PIN_ROOT / self.instance

    def cflags(self) -> list[str]:
        return [
            f"-I{BPF_DIR}",
            f'-DSTEER_PIN_DIR="{self.pin_dir}"',
            f"-DSTEER_MAX_SESSIONS={self.max_sessions}",
            f"-DSTEER_MAX_FLOWS={self.max_flows}",
            f"-DSTEER_MAX_VIPS={self.max_vips}",
            f"-DSTEER_MAX_BACKENDS={self.max_backends}",
            f"-DSTEER_SESSION_FLOW_CAP={self.session_flow_ring}",
            f"-DSTEER_NOFLOW_PPS={self.noflow_pps}",
            f"-DSTEER_NOFLOW_BURST={self.noflow_burst}",
            f"-DSTEER_SESSION_CHECK_PPS={self.session_check_pps}",
            f"-DSTEER_SESSION_CHECK_BURST={self.session_check_burst}",
            f"-DSTEER_SESSION_NOFLOW_PPS={self.session_noflow_pps}",
            f"-DSTEER_SESSION_NOFLOW_BURST={self.session_noflow_burst}",
            f"-DSTEER_LEARN_RING_PAGES={self.learn_ring_pages}",
            *(["-DSTEER_EXPLAIN"] if self.explain else []),
        ]


def is_pinned(instance: str) -> bool:
    pin = PIN_ROOT / instance
    return all((pin / m).exists() for m in PINNED_MAPS)


def compile_bpf(opts: BuildOptions, text: str | None = None) -> Any:
    """Compile bpf/steer.bpf.c (or `text`, e.g. only the map declarations) against the
    pins of `opts.instance`, creating and pinning maps that are not pinned yet."""
    from bcc import BPF  # imported late: bcc is slow to import and needs root to use

    opts.pin_dir.mkdir(parents=True, exist_ok=True)
    try:
        if text is None:
            return BPF(src_file=str(BPF_DIR / "steer.bpf.c"), cflags=opts.cflags())
        return BPF(text=text, cflags=opts.cflags())
    except Exception as e:
        raise LoaderError(f"compiling the data plane failed: {e}") from e


class DataPlane:
    """The compiled programs and their (possibly adopted) maps."""

    def __init__(self, opts: BuildOptions) -> None:
        from bcc import BPF

        self.opts = opts
        self.adopted = is_pinned(opts.instance)
        self.bpf = compile_bpf(opts)
        try:
            self.progs = {side: self.bpf.load_func(fn, BPF.XDP) for side, fn in PROGRAMS.items()}
        except Exception as e:
            raise LoaderError(f"the verifier refused the data plane: {e}") from e
        log.info(
            "data plane %s: %s maps at %s",
            opts.instance,
            "adopted pinned" if self.adopted else "created and pinned",
            opts.pin_dir,
        )

    def close(self) -> None:
        """Close the programs' and maps' fds (pinned maps stay in bpffs). A process that
        builds many data planes (the tests) must: bcc frees nothing on its own."""
        self.bpf.cleanup()

    def __enter__(self) -> DataPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def table(self, name: str) -> Any:
        return self.bpf[name.encode()]

    def prog_fd(self, side: str) -> int:
        return int(self.progs[side].fd)

    def attach(self, side: str, ifname: str, netns: str | None = None, mode: str = "auto") -> str:
        """Attach the `side` program to `ifname` (in `netns`), replacing any program there.
        mode: native, generic or auto (native, falling back to generic). Returns the mode."""
        modes = ["native", "generic"] if mode == "auto" else [mode]
        with IPRoute(netns=netns) if netns else IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise LoaderError(f"no interface {ifname!r} in netns {netns or '(root)'}")
            index = found[0]
            errors = []
            for m in modes:
                # a program attached in the other mode blocks this one: clear it first
                for other in XDP_MODES.values():
                    if other != XDP_MODES[m]:
                        _set_xdp(ipr, index, -1, other)
                try:
                    _set_xdp(ipr, index, self.prog_fd(side), XDP_MODES[m], strict=True)
                except Exception as e:
                    errors.append(f"{m}: {e}")
                    if mode == "auto" and m == "native":
                        log.warning(
                            "native XDP on %s failed (%s); falling back to generic", ifname, e
                        )
                    continue
                self._set_config(side, index)
                log.info(
                    "attached %s program to %s (netns %s, %s mode)", side, ifname, netns or "-", m
                )
                return m
        raise LoaderError(f"attaching to {ifname}: {'; '.join(errors)}")

    def _set_config(self, side: str, ifindex: int) -> None:
        field = "public_ifindex" if side == "public" else "internal_ifindex"
        configure(self.table("steer_config"), **{field: ifindex})

    def set_session_flow_cap(self, cap: int) -> None:
        """The per-session flow cap in force (1..BuildOptions.session_flow_ring), at run time."""
        if not 1 <= cap <= self.opts.session_flow_ring:
            raise LoaderError(
                f"session flow cap {cap}: must be 1-{self.opts.session_flow_ring} (the ring size)"
            )
        configure(self.table("steer_config"), session_flow_cap=cap)


def configure(table: Any, **fields: int) -> Any:
    """Write `fields` of steer_config's one entry (the data plane reads it per packet);
    returns the entry as written. The one writer of steer_config."""
    key = table.Key(0)
    leaf = table[key]
    names = {f[0] for f in leaf._fields_}
    for name, value in fields.items():
        if name not in names:
            raise AttributeError(f"steer_config has no field {name!r}")
        setattr(leaf, name, value)
    table[key] = leaf
    return leaf


def config_flags(table: Any, set_: int = 0, clear: int = 0) -> int:
    """Set and clear STEER_CONFIG_* bits of steer_config.flags; the flags as written."""
    flags = (int(table[table.Key(0)].flags) & ~clear) | set_
    configure(table, flags=flags)
    return flags


def _set_xdp(ipr: Any, index: int, fd: int, flags: int, strict: bool = False) -> None:
    attrs = [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]
    try:
        ipr.link("set", index=index, xdp={"attrs": attrs})
    except Exception:
        if strict:
            raise


def detach(ifname: str, netns: str | None = None) -> None:
    with IPRoute(netns=netns) if netns else IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        for flags in XDP_MODES.values():
            _set_xdp(ipr, found[0], -1, flags)


@dataclass
class Attachment:
    """Where an instance's programs are attached; kept in RUN_DIR so `unload` can find it."""

    netns: str | None
    public: str
    internal: str

    @staticmethod
    def path(instance: str) -> Path:
        return RUN_DIR / f"{instance}.attach.json"

    def save(self, instance: str) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.path(instance).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, instance: str) -> Attachment | None:
        try:
            return cls(**json.loads(cls.path(instance).read_text()))
        except FileNotFoundError:
            return None


def unload(instance: str) -> list[str]:
    """Detach the instance's programs and remove its pins. Returns what it did."""
    done = []
    att = Attachment.load(instance)
    if att:
        for ifname in (att.public, att.internal):
            try:
                detach(ifname, att.netns)
                done.append(f"detached {ifname} (netns {att.netns or '-'})")
            except Exception as e:  # the namespace may be gone already
                done.append(f"could not detach {ifname}: {e}")
        Attachment.path(instance).unlink(missing_ok=True)
    pin = PIN_ROOT / instance
    if pin.exists():
        shutil.rmtree(pin)
        done.append(f"removed pins {pin}")
    return done
