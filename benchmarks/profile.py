"""Sample bff workers with py-spy during a load round and summarise where the CPU went."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")

# Attribution of a frame's file to the layer it belongs to.
_AREAS = (
    ("bff", ("bff/",)),
    ("httpcore", ("httpcore/",)),
    ("h11", ("h11/",)),
    ("httpx", ("httpx/",)),
    ("redis-py", ("redis/",)),
    ("uvicorn", ("uvicorn/",)),
    ("starlette", ("starlette/",)),
    ("anyio", ("anyio/",)),
    ("cryptography", ("cryptography/",)),
    ("itsdangerous", ("itsdangerous/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("asyncio", ("asyncio/",)),
)


def py_spy() -> str | None:
    venv = Path(sys.executable).parent / "py-spy"
    return str(venv) if venv.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, seconds: float, rate: int = 200) -> subprocess.Popen[bytes]:
    tool = py_spy()
    if tool is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [tool, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("/site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['func']} ({file})"


# Frames every sample shares (process start-up, the event loop's runner): not informative.
_SCAFFOLDING = ("multiprocessing/", "runpy", "<module>", "uvicorn/main.py", "uvicorn/server.py",
                "uvicorn/_compat.py", "uvicorn/_subprocess.py", "uvicorn/supervisors/",
                "asyncio/runners.py")


def _area(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    file = match["file"] if match else frame
    for name, markers in _AREAS:
        if any(file.startswith(m) or "/" + m in file for m in markers):
            return name
    return "stdlib and other"


@dataclass(frozen=True)
class Profile:
    samples: int
    self_top: list[tuple[str, float]]
    inclusive_top: list[tuple[str, float]]
    by_area: list[tuple[str, float]]


def summarise(files: list[Path], top: int = 15) -> Profile:
    """Self and inclusive shares per function, and self share per library, over all files."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [f for f in stack.split(";") if f and not f.startswith("process ")
                      and not f.startswith("thread ")]
            if not frames:
                continue
            total += count
            own[_short(frames[-1])] += count
            areas[_area(frames[-1])] += count
            for name in {_short(f) for f in frames if not any(m in f for m in _SCAFFOLDING)}:
                inclusive[name] += count

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, 100.0 * c / total) for name, c in counter.most_common(n)] if total else []

    return Profile(total, shares(own, top), shares(inclusive, top), shares(areas, len(_AREAS) + 1))
