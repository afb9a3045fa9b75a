"""Build the local stand-ins for the three images docker-compose.yaml would pull from a registry.

Our machines reach Debian's archive and the package index but no image registry, so ``postgres:16``,
``redis:7.2-bookworm`` and ``apache/airflow:3.3.2-python3.11`` cannot be pulled. This builds, with the Docker
engine the machine has:

* ``carbon-standin/bookworm:minbase``: a Debian bookworm root file system (``debootstrap --variant=minbase``)
  imported with ``docker import``, the base of the three others;
* ``carbon-standin/postgres:15`` and ``carbon-standin/redis:7`` from Debian's packages (tests/compose/postgres,
  tests/compose/redis);
* ``carbon-standin/airflow:3.3.2-python3.11`` (tests/compose/airflow): Python 3.11 with apache-airflow 3.3.2 and
  the providers the stack uses, installed offline from a wheelhouse built here on the host with
  tests/compose/constraints-image.txt.

Each image carries a label with the hash of what it was built from; an image whose label matches is kept, so a
second run costs seconds. Used by tests/compose/test_compose_up.py; by hand: ``python tests/compose/standins.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = ROOT / ".cache" / "compose"
WHEELHOUSE = CACHE / "wheelhouse"
CONSTRAINTS = HERE / "constraints-image.txt"
LABEL = "org.airflow-provider-carbon.standin-hash"

BASE = "carbon-standin/bookworm:minbase"
POSTGRES = "carbon-standin/postgres:15"
REDIS = "carbon-standin/redis:7"
AIRFLOW = "carbon-standin/airflow:3.3.2-python3.11"
DEBIAN_MIRROR = os.environ.get("CARBON_DEBIAN_MIRROR", "http://deb.debian.org/debian")

#: what the stand-in Airflow image installs (pinned by constraints-image.txt), and what the project's Dockerfile
#: adds (scipy, the extra queue). async-timeout is listed because redis asks for it only on Python < 3.11.3:
#: Debian's 3.11.2 needs it, the host's newer 3.11 would leave it out.
IMAGE_REQUIREMENTS = (
    "apache-airflow[celery,postgres,fab]==3.3.2",
    "apache-airflow-providers-standard",
    "numpy",
    "pandas",
    "requests",
    "tenacity",
    "async-timeout",
    "scipy",
    "flit_core",
)


def log(message: str) -> None:
    print(f"[standins] {message}", flush=True)


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def image_label(tag: str) -> str | None:
    """The stand-in hash label of ``tag``, or ``None`` if there is no such image."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag], capture_output=True, text=True
    )
    if result.returncode != 0:
        return None
    return (json.loads(result.stdout) or {}).get(LABEL)


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def tree_digest(directory: Path) -> str:
    files = [p for p in sorted(directory.rglob("*")) if p.is_file()]
    return digest(*(part for p in files for part in (str(p.relative_to(directory)), p.read_bytes())))


def build_base() -> str:
    """The Debian root file system as an image; its hash is the suite and the variant (the archive moves on, but a
    base that installs Debian's packages is as good a week later)."""
    wanted = digest("bookworm", "minbase")
    if image_label(BASE) == wanted:
        log(f"{BASE}: up to date")
        return wanted
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed (apt-get install -y debootstrap)")
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="carbon-rootfs-", dir="/var/tmp"))
    try:
        run("debootstrap", "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR, stdout=subprocess.DEVNULL)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run(
            "docker",
            "import",
            "--change",
            'CMD ["/bin/bash"]',
            "--change",
            f"LABEL {LABEL}={wanted}",
            "-",
            BASE,
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise SystemExit("tar of the debootstrap root failed")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log(f"{BASE}: debootstrap + import in {time.monotonic() - started:.0f} s")
    return wanted


def build_wheelhouse() -> str:
    """Every wheel the stand-in Airflow image installs, built on the host (pip here reaches the index; pip inside a
    build would need the host's CA bundle). Kept in .cache/compose/wheelhouse while the pins do not change."""
    wanted = digest(CONSTRAINTS.read_bytes(), *IMAGE_REQUIREMENTS)
    stamp = WHEELHOUSE / ".standin-hash"
    if stamp.is_file() and stamp.read_text() == wanted:
        log(f"wheelhouse: up to date ({sum(1 for _ in WHEELHOUSE.glob('*.whl'))} wheels)")
        return wanted
    started = time.monotonic()
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    WHEELHOUSE.mkdir(parents=True)
    env = {**os.environ, "PIP_CONSTRAINT": str(CONSTRAINTS), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # pip's output only when it fails (a machine's pip configuration can warn once per package)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(WHEELHOUSE), *IMAGE_REQUIREMENTS],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"pip wheel for the stand-in image failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    stamp.write_text(wanted)
    log(f"wheelhouse: {sum(1 for _ in WHEELHOUSE.glob('*.whl'))} wheels in {time.monotonic() - started:.0f} s")
    return wanted


def build_image(tag: str, context: Path, wanted: str) -> None:
    """``docker build`` of ``context`` on the base, unless ``tag`` exists with the hash ``wanted``."""
    if image_label(tag) == wanted:
        log(f"{tag}: up to date")
        return
    started = time.monotonic()
    result = subprocess.run(
        [
            "docker",
            "build",
            "--build-arg",
            f"BASE_IMAGE={BASE}",
            "--label",
            f"{LABEL}={wanted}",
            "--tag",
            tag,
            str(context),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"docker build of {tag} failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    log(f"{tag}: built in {time.monotonic() - started:.0f} s")


def build_airflow(base_hash: str, wheels_hash: str) -> None:
    """The Airflow stand-in's build context: its own folder, the pins and the wheelhouse (hard links: no copy of
    100 MB), staged under .cache/compose so that the repository's own .dockerignore does not apply."""
    wanted = digest(base_hash, tree_digest(HERE / "airflow"), wheels_hash)
    if image_label(AIRFLOW) == wanted:
        log(f"{AIRFLOW}: up to date")
        return
    stage = CACHE / "airflow-context"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(HERE / "airflow", stage)
    shutil.copy2(CONSTRAINTS, stage / "constraints-image.txt")
    shutil.copytree(WHEELHOUSE, stage / "wheelhouse", copy_function=os.link)
    (stage / "wheelhouse" / ".standin-hash").unlink(missing_ok=True)
    try:
        build_image(AIRFLOW, stage, wanted)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def build_all() -> None:
    """Every stand-in, each only if what it is built from changed."""
    base_hash = build_base()
    for tag, folder in ((POSTGRES, HERE / "postgres"), (REDIS, HERE / "redis")):
        build_image(tag, folder, digest(base_hash, tree_digest(folder)))
    build_airflow(base_hash, build_wheelhouse())


if __name__ == "__main__":
    build_all()
