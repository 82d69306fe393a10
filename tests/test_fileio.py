"""Folder writes are all or nothing: the old folder or the new one, never half of one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cosyn.io.fileio import atomic_dir, remove_leftovers_in


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


def _killed_write(path):
    """What a kill -9 inside atomic_dir leaves: its temp folder with a half-written file."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    (tmp / "model.safetensors").write_bytes(b"half")
    return tmp


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
