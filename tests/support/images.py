"""Offline test images: a busybox-static rootfs tarred in Python and fed to `docker import`.

Why: the test machine has no registry, so every image a test deploys is built here. Each image
is a few MB (one static busybox plus applet symlinks) and builds in well under a second.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

# PID 1 is a shell that forwards SIGTERM, so `docker stop` returns at once instead of after 10s.
_SERVE = (  # logs a start line, then one line per request (-v), for log tests
    'echo "dm-test web $APP_VERSION starting on port ${PORT:-80}"\n'
    'httpd -f -v -p "${PORT:-80}" -h /www & pid=$!\n'
    "trap 'kill $pid; exit 0' TERM INT\nwait $pid\n"
)
_IDLE = "sleep 2147483647 & pid=$!\ntrap 'kill $pid; exit 0' TERM INT\nwait $pid\n"
_HTTP500 = (  # busybox httpd turns a CGI "Status:" header into the response status
    "#!/bin/sh\nprintf 'Status: 500 Internal Server Error\\r\\n"
    "Content-Type: text/plain\\r\\n\\r\\nunhealthy\\n'\n"
)


@dataclass(frozen=True)
class ImageSpec:
    """What goes into one image: extra files (path -> (content, mode)) and import changes."""

    tag: str
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    changes: tuple[str, ...] = ()


def _web(version: str) -> ImageSpec:
    return ImageSpec(
        f"dm-test/web:{version}",
        {
            "www/index.html": (f"dm-test web {version}\n", 0o644),
            "www/version": (version, 0o644),
            "start.sh": (_SERVE, 0o755),
        },
        (f"ENV APP_VERSION={version}", "EXPOSE 80", 'CMD ["/bin/sh", "/start.sh"]'),
    )


WEB_V1 = "dm-test/web:v1"
WEB_V2 = "dm-test/web:v2"
DROPS_ENV = "dm-test/drops-env:v1"  # its entrypoint removes DATABASE_URL before the app starts
CADDY = "dm-test/caddy:2"
CADDY_BINARY = Path("/usr/bin/caddy")
UNHEALTHY = "dm-test/unhealthy:v1"
UNHEALTHY_HTTP500 = "dm-test/unhealthy:http500"
CRASH = "dm-test/crash:v1"

SPECS: dict[str, ImageSpec] = {
    WEB_V1: _web("v1"),
    WEB_V2: _web("v2"),
    # Stays up, listens nowhere: never healthy for HTTP checks (a TCP check to a published
    # port may still connect to docker-proxy, which then closes at once).
    UNHEALTHY: ImageSpec(
        UNHEALTHY, {"idle.sh": (_IDLE, 0o755)}, ("EXPOSE 80", 'CMD ["/bin/sh", "/idle.sh"]')
    ),
    # Listens on 80 but answers 500 on / (and 404 elsewhere): fails HTTP checks, passes TCP.
    UNHEALTHY_HTTP500: ImageSpec(
        UNHEALTHY_HTTP500,
        {"www/cgi-bin/index.cgi": (_HTTP500, 0o755), "start.sh": (_SERVE, 0o755)},
        ("EXPOSE 80", 'CMD ["/bin/sh", "/start.sh"]'),
    ),
    CRASH: ImageSpec(
        CRASH, {}, ('CMD ["/bin/sh", "-c", "echo dm-test crash: exiting >&2; exit 3"]',)
    ),
    DROPS_ENV: ImageSpec(
        DROPS_ENV,
        {**_web("v1").files},
        (
            "ENV APP_VERSION=v1",
            "EXPOSE 80",
            'CMD ["env", "-u", "DATABASE_URL", "/bin/sh", "/start.sh"]',
        ),
    ),
}


def _libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    return [Path(p) for p in re.findall(r"(/\S+\.so[^\s]*)", out)]


def caddy_rootfs_tar() -> bytes:
    """Debian's caddy binary with the shared libraries `ldd` lists: a proxy image made offline
    (the official image cannot be pulled here). DeployMate runs it with `caddy run`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("tmp", "data", "etc", "etc/ssl", "etc/ssl/certs"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        files = [CADDY_BINARY, *_libraries(CADDY_BINARY)]
        certs = Path("/etc/ssl/certs/ca-certificates.crt")
        if certs.exists():
            files.append(certs)
        for path in files:
            tar.add(str(path.resolve()), arcname=str(path).lstrip("/"))
    return buf.getvalue()


def build_caddy_image(docker_host: str | None = None) -> str:
    if not CADDY_BINARY.exists():
        raise RuntimeError(f"{CADDY_BINARY} is missing: install Debian's caddy package")
    if (existing := image_id(CADDY, docker_host)) is not None:
        return existing
    subprocess.run(
        [*_docker(docker_host), "import", "--message", "deploymate test proxy", "-", CADDY],
        input=caddy_rootfs_tar(),
        check=True,
        capture_output=True,
    )
    return image_id(CADDY, docker_host) or ""


def is_static_elf(path: Path) -> bool:
    """True for an ELF without an interpreter (a dynamic busybox would not run in the image)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only, as on the test machines
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 not in types  # PT_INTERP


def rootfs_tar(spec: ImageSpec) -> bytes:
    """A deterministic rootfs: /bin/busybox, one symlink per applet, the spec's files."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        dirs = {"bin", "etc", "root", "www", "tmp"}
        dirs |= {str(p) for f in spec.files for p in Path(f).parents if str(p) != "."}
        for d in sorted(dirs):
            add(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, BUSYBOX.read_bytes())
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
        for name, (content, mode) in sorted(spec.files.items()):
            add(name, tarfile.REGTYPE, mode, content.encode())
    return buf.getvalue()


def _docker(docker_host: str | None) -> list[str]:
    return ["docker", *(["-H", docker_host] if docker_host else [])]


def image_id(tag: str, docker_host: str | None = None) -> str | None:
    """ID of `tag` on that daemon, or None when it does not have it."""
    result = subprocess.run(
        [*_docker(docker_host), "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def build_images(
    docker_host: str | None = None, tags: Sequence[str] = tuple(SPECS)
) -> dict[str, str]:
    """Build the test images on a daemon (None: the default one); skip tags it already has."""
    if not is_static_elf(BUSYBOX):
        raise RuntimeError(f"{BUSYBOX} is not a static binary: install Debian's busybox-static")
    ids = {}
    for tag in tags:
        spec = SPECS[tag]
        if (existing := image_id(tag, docker_host)) is not None:
            ids[tag] = existing
            continue
        args = [*_docker(docker_host), "import", "--message", "deploymate test image"]
        for change in spec.changes:
            args += ["--change", change]
        subprocess.run([*args, "-", tag], input=rootfs_tar(spec), check=True, capture_output=True)
        ids[tag] = image_id(tag, docker_host) or ""
    return ids


def copy_images(
    tags: Sequence[str], to_docker_host: str, from_docker_host: str | None = None
) -> dict[str, str]:
    """Put images onto another daemon in one `docker save | docker load`; skips those present."""
    ids = {}
    for tag in tags:
        if (found := image_id(tag, from_docker_host)) is None:
            raise RuntimeError(f"image {tag} not found on the source daemon")
        ids[tag] = found
    missing = [t for t in tags if image_id(t, to_docker_host) != ids[t]]
    if not missing:
        return ids
    save = subprocess.Popen([*_docker(from_docker_host), "save", *missing], stdout=subprocess.PIPE)
    load = subprocess.run(
        [*_docker(to_docker_host), "load", "--quiet"],
        stdin=save.stdout,
        capture_output=True,
        text=True,
    )
    if save.stdout is not None:
        save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise RuntimeError(f"copying {missing} failed: {load.stderr.strip()}")
    return ids


def copy_image(tag: str, to_docker_host: str, from_docker_host: str | None = None) -> str:
    """One image onto another daemon; returns its ID."""
    return copy_images([tag], to_docker_host, from_docker_host)[tag]


# Images for shipping measurements: a base of dm-test/web:v1 plus a large layer, then the
# same layers under a new config (a label), then the top layer changed.
SHIP_BASE, SHIP_RELABELED, SHIP_TOP_CHANGED = (
    "dm-test/ship:base",
    "dm-test/ship:relabeled",
    "dm-test/ship:top-changed",
)


def build_shipping_images(big_mib: int = 8, top_kib: int = 512) -> dict[str, str]:
    """Build the three on the control host (offline: FROM a local image); tag -> image ID."""
    import random
    import tempfile

    build_images(None, tags=[WEB_V1])
    rng = random.Random(20261202)  # the same bytes every run: the build cache reuses layers
    with tempfile.TemporaryDirectory(prefix="dm-ship-") as tmp:
        root = Path(tmp)
        (root / "big.bin").write_bytes(rng.randbytes(big_mib * 1024 * 1024))
        (root / "top1.bin").write_bytes(rng.randbytes(top_kib * 1024))
        (root / "top2.bin").write_bytes(rng.randbytes(top_kib * 1024))
        files = {
            SHIP_BASE: f"FROM {WEB_V1}\nCOPY big.bin /big.bin\nCOPY top1.bin /top.bin\n",
            SHIP_RELABELED: f"FROM {SHIP_BASE}\nLABEL dm.test=relabeled\n",
            SHIP_TOP_CHANGED: f"FROM {WEB_V1}\nCOPY big.bin /big.bin\nCOPY top2.bin /top.bin\n",
        }
        ids = {}
        for tag, text in files.items():
            (root / "Dockerfile").write_text(text)
            subprocess.run(
                ["docker", "build", "-q", "-t", tag, str(root)], check=True, capture_output=True
            )
            found = image_id(tag)
            assert found is not None
            ids[tag] = found
    return ids
