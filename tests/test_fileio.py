"""Folder writes are all or nothing: the old folder or the new one, never half of one."""

from __future__ import annotations

import stat

import pytest

from cosyn.io.fileio import atomic_dir


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
