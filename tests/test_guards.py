"""An output that is, holds or lies inside its input is refused, whichever way the paths are spelt."""

from __future__ import annotations

import pytest

from cosyn.io.guards import OverlapError, refuse_overlap


@pytest.mark.parametrize("out", ["src", "src/sub", "src/missing/deeper", ".", "src/../src", "link_to_src",
                                 "link_to_src/new"])
def test_an_output_that_is_holds_or_lies_inside_the_input_is_refused(tmp_path, out):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "link_to_src").symlink_to(tmp_path / "src")
    with pytest.raises(OverlapError) as e:
        refuse_overlap(tmp_path / "src", tmp_path / out, "--out")
    assert str(tmp_path / "src") in str(e.value) and str(tmp_path / out) in str(e.value)
    assert "Choose a --out outside" in str(e.value)
    assert isinstance(e.value, ValueError)  # the CLI's handler prints it as a one-line error


@pytest.mark.parametrize("out", ["other", "src_sibling", "other/missing"])
def test_an_output_beside_the_input_passes(tmp_path, out):
    (tmp_path / "src").mkdir()
    refuse_overlap(tmp_path / "src", tmp_path / out, "--out")


def test_a_symlinked_output_folder_pointing_into_the_input_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "src")
    with pytest.raises(OverlapError, match="is the input"):
        refuse_overlap(tmp_path / "src", tmp_path / "out", "--out")
