"""Folder writes are all or nothing: the old folder or the new one, never half of one."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cosyn.io.fileio import atomic_dir, atomic_write, in_words, output_folder, remove_leftovers_in

ROOT = Path(__file__).resolve().parents[1]


def test_a_new_folder_replaces_the_old_one_whole_and_is_readable_by_others(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stale.txt").write_text("from the previous write")
    with atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".")  # hidden from folder readers meanwhile
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temp or old folder left


def test_a_failed_write_leaves_the_old_folder_and_no_temp_folder(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt  # an interrupted write, not only an error
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_failed_write_of_a_new_folder_leaves_nothing(tmp_path):
    with pytest.raises(OSError), atomic_dir(tmp_path / "a" / "bundle") as tmp:
        (tmp / "x").write_text("x")
        raise OSError("disk full")
    assert list((tmp_path / "a").iterdir()) == []


def _killed_write(path: Path) -> Path:
    """Start writing `path` with atomic_dir in a process that is then killed with SIGKILL mid-write;
    returns the temp folder that process left (holding a half-written file)."""
    before = set(path.parent.iterdir())
    code = ("import os, signal, sys; from pathlib import Path; from cosyn.io.fileio import atomic_dir\n"
            "with atomic_dir(Path(sys.argv[1])) as tmp:\n"
            "    (tmp / 'model.safetensors').write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (left,) = set(path.parent.iterdir()) - before
    assert (left / "model.safetensors").read_bytes() == b"half"
    return left


def test_rewriting_a_path_removes_what_a_killed_write_of_it_left(tmp_path):
    target = tmp_path / "000"
    stale = _killed_write(target)
    other = _killed_write(tmp_path / "001")
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
    assert not stale.exists() and (target / "a.txt").read_text() == "new"
    assert other.exists()  # another path's write is not this one's business
    assert remove_leftovers_in(tmp_path) == [other] and not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000"]


def test_resuming_training_removes_checkpoint_leftovers(tmp_path):
    from test_train import _cfg, _dataset

    from cosyn.training.trainer import train

    data, run = _dataset(tmp_path / "data"), tmp_path / "run"
    train(_cfg(data, run, steps=2))
    stale = _killed_write(run / "checkpoints" / "step_0000004")
    train(_cfg(data, run, steps=3), resume=True)
    assert not stale.exists()
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_leftovers_are_found_below_the_output_and_only_ours_of_dead_writers(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    dead = _killed_write(images / "syn_000001.png")  # a level down, as augment's images/ and instances/
    (tmp_path / ".notes.tmp").write_text("the user's own")  # a dot-file that merely looks temporary
    (tmp_path / ".000.abc123.tmp").mkdir()  # a name of our old scheme: no writer recorded, so not touched
    (tmp_path / ".cosyn-tmp.odd.tmp").write_text("")  # our prefix, but not a name we write
    code = ("import sys; from pathlib import Path; from cosyn.io.fileio import atomic_write\n"
            "def write(tmp):\n"
            "    print(tmp, flush=True); sys.stdin.readline(); Path(tmp).write_text('done')\n"
            "atomic_write(Path(sys.argv[1]), write)\n")
    live = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "classes.json")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        writing = Path(live.stdout.readline().strip())  # the live writer's temp file, mid-write
        assert remove_leftovers_in(tmp_path) == [dead]
        assert writing.exists() and all((tmp_path / n).exists() for n in (".notes.tmp", ".000.abc123.tmp",
                                                                            ".cosyn-tmp.odd.tmp"))
        live.stdin.write("go\n")
        live.stdin.flush()
        assert live.wait(timeout=60) == 0
    finally:
        live.kill()
    assert (tmp_path / "classes.json").read_text() == "done" and not writing.exists()


def test_leftovers_deeper_than_asked_are_not_searched(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    stale = _killed_write(deep / "x")
    assert remove_leftovers_in(tmp_path) == [] and stale.exists()  # a big --out is not walked whole
    assert remove_leftovers_in(tmp_path, depth=3) == [stale]


def test_a_failed_command_removes_the_output_folders_it_created_while_empty(tmp_path):
    with pytest.raises(ValueError), output_folder(tmp_path / "new" / "out"):
        raise ValueError("refused")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError), output_folder(tmp_path / "kept" / "out") as out:
        (out / "000").mkdir()  # something was written: the folder stays
        raise ValueError("failed later")
    assert [p.name for p in (tmp_path / "kept" / "out").iterdir()] == ["000"]
    with output_folder(tmp_path / "ok") as out:
        pass
    assert out.is_dir()


def test_a_full_disk_is_said_in_words_naming_the_folder(tmp_path):
    """Writing to /dev/full fails with ENOSPC, as a full disk does."""
    def write(tmp: str) -> None:
        with open("/dev/full", "wb") as f:
            f.write(b"\0" * 65536)

    with pytest.raises(OSError) as e:
        atomic_write(tmp_path / "out" / "x.bin", write)
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == f"{tmp_path / 'out'}: cannot write there: the disk is full (no space left on the device); " \
                           "free some space or write elsewhere"
    assert list((tmp_path / "out").iterdir()) == []  # no temp file left


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_unshare = pytest.mark.skipif(not _unshare_works(), reason="no user namespaces (unshare -Urm) for a tiny tmpfs")


def on_small_disk(folder: Path, script: str, *args: str, kib: int = 64, read_only: bool = False,
                  timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the shell `script` (with `args` as $1...) while a `kib` KiB tmpfs is mounted on `folder`, in a
    private mount namespace: a real full (or read-only) disk without root on the host. The tmpfs and
    what was written to it vanish when the script ends, so the script checks what it must."""
    folder.mkdir(parents=True, exist_ok=True)
    ro = "mount -o remount,ro \"$DISK\" && " if read_only else ""
    mount = f'mount -t tmpfs -o size={kib}k tmpfs "$DISK" && {ro}'
    return subprocess.run(["unshare", "-Urm", "sh", "-c", mount + script, "sh", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "DISK": str(folder)}, cwd=ROOT)


@needs_unshare
def test_a_short_write_without_errno_on_a_full_disk_is_said_in_words(tmp_path):
    """numpy reports a full disk only as "N requested and M written": the writer probes and says why."""
    code = ("import os, sys; import numpy as np; from pathlib import Path; from cosyn.io.fileio import atomic_dir\n"
            "try:\n"
            "    with atomic_dir(Path(os.environ['DISK']) / 'bundle') as tmp:\n"
            "        np.save(tmp / 'dist.npy', np.zeros(100_000))\n"
            "except OSError as e:\n"
            "    print(e, e.errno)\n"
            "print(sorted(os.listdir(os.environ['DISK'])))\n")
    done = on_small_disk(tmp_path / "disk", '"$1" -c "$2"', sys.executable, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{tmp_path / 'disk'}: cannot write there: the disk is full (no space left "
                                        f"on the device); free some space or write elsewhere {errno.ENOSPC}", "[]"]


@needs_unshare
def test_a_read_only_disk_is_said_in_words(tmp_path):
    code = ("import os; from pathlib import Path; from cosyn.io.fileio import atomic_write\n"
            "try:\n"
            "    atomic_write(Path(os.environ['DISK']) / 'x.json', lambda p: Path(p).write_text('{}'))\n"
            "except OSError as e:\n"
            "    print(e)\n")
    done = on_small_disk(tmp_path / "disk", '"$1" -c "$2"', sys.executable, code, read_only=True)
    assert done.stdout.strip() == f"{tmp_path / 'disk'}: cannot write there: the file system is read-only; choose a " \
                                  "folder you can write to", done.stderr


_KILLED_AT_PUBLISH = """
import os, runpy, signal, sys
from pathlib import Path
final_name = sys.argv.pop(1)
def kill_at_publish(event, args):  # what a kill -9 mid-write leaves: the temp written, never renamed into place
    if event == "os.rename" and Path(args[1]).name == final_name:
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(kill_at_publish)
sys.argv[0] = "cosyn"
runpy.run_module("cosyn", run_name="__main__")
"""


def cosyn_killed_at_publish(final_name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m cosyn *args`, killed with SIGKILL at the moment it would rename a finished temp file or
    folder to `final_name`: the same point every run, whatever the machine's speed."""
    return subprocess.run([sys.executable, "-c", _KILLED_AT_PUBLISH, final_name, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def temp_files(folder: Path) -> list[Path]:
    """Every temp file or folder anywhere under `folder`, ours or not."""
    return sorted(p for p in folder.rglob("*") if p.name.endswith((".tmp", ".old")))


def test_an_error_outside_a_write_names_its_path_without_errno_text(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(OSError) as e:
        missing.read_text()
    assert str(in_words(e.value)) == f"{missing}: no such file or directory"  # was "[Errno 2] No such file ...: '…'"
    denied = PermissionError(errno.EACCES, "Permission denied", str(missing))
    assert str(in_words(denied)) == f"{missing}: permission denied"  # a read: not called a write failure
