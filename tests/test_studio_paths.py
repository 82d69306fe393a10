"""Studio path confinement and upload limits: no way out of the configured roots."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from cosyn.studio.gallery import session_dir
from cosyn.studio.paths import PathError, check_name, check_upload, confine, extract_zip


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    data, other = tmp_path / "data", tmp_path / "other"
    (data / "consep" / "images").mkdir(parents=True)
    (other / "pannuke").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    return [data, other]


def test_paths_inside_a_root_resolve(roots):
    assert confine(roots[0] / "consep", roots) == (roots[0] / "consep").resolve()
    assert confine("consep/images", roots) == (roots[0] / "consep" / "images").resolve()
    assert confine("pannuke", roots) == (roots[1] / "pannuke").resolve()  # the root where it exists
    assert confine(str(roots[1]), roots) == roots[1].resolve()


def test_parent_references_are_refused_even_when_they_stay_inside(roots):
    for attempt in ("../secret", "consep/../../secret", f"{roots[0]}/consep/.."):
        with pytest.raises(PathError, match=r"'\.\.' is not allowed"):
            confine(attempt, roots, "dataset folder")


def test_absolute_paths_outside_the_roots_are_refused(roots, tmp_path):
    for attempt in (tmp_path / "secret", "/etc", "/"):
        with pytest.raises(PathError, match="lies outside the allowed data roots"):
            confine(attempt, roots)


def test_symlink_escapes_are_refused(roots, tmp_path):
    (roots[0] / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(PathError, match="through a symbolic link"):
        confine("escape", roots)
    with pytest.raises(PathError, match="through a symbolic link"):
        confine(roots[0] / "escape", roots)
    (roots[0] / "inside").symlink_to(roots[1] / "pannuke")  # a link between roots is fine
    assert confine("inside", roots) == (roots[1] / "pannuke").resolve()


def test_empty_paths_and_missing_roots_say_what_to_do(roots):
    with pytest.raises(PathError, match="give a folder inside"):
        confine("  ", roots)
    with pytest.raises(PathError, match="--data-root"):
        confine("consep", [])


def test_names_are_single_folder_names():
    assert check_name("run-1_a.b") == "run-1_a.b"
    for bad in ("", "..", "a/b", "../x", ".hidden", "x" * 65, "a b"):
        with pytest.raises(PathError):
            check_name(bad, "run name")


def test_upload_size_is_limited(tmp_path):
    f = tmp_path / "layout.json"
    f.write_bytes(b"x" * 2048)
    assert check_upload(f, 4096) == f
    with pytest.raises(PathError, match="over the upload limit"):
        check_upload(f, 1024)


def _zip(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_zip_uploads_unpack_into_their_folder(tmp_path):
    z = _zip(tmp_path / "ds.zip", {"ds/images/a.png": b"1", "ds/classes/a.png": b"2"})
    out = extract_zip(z, tmp_path / "up", max_bytes=1000)
    assert out == tmp_path / "up" / "ds" and (out / "images" / "a.png").read_bytes() == b"1"
    flat = extract_zip(_zip(tmp_path / "flat.zip", {"a.txt": b"", "b.txt": b""}), tmp_path / "up2", 1000)
    assert flat == tmp_path / "up2"


@pytest.mark.parametrize("members, link, message", [
    ({"../evil.txt": b"x"}, None, "would unpack outside"),
    ({"/abs/evil.txt": b"x"}, None, "would unpack outside"),
    ({"ok.txt": b"x"}, "ds/link", "symbolic link"),
    ({"big.bin": b"0" * 5000}, None, "unpacks to"),
])
def test_zip_uploads_refuse_escapes_links_and_bombs(tmp_path, members, link, message):
    z = _zip(tmp_path / "bad.zip", members, link)
    with pytest.raises(PathError, match=message):
        extract_zip(z, tmp_path / "up", max_bytes=1000)
    assert not (tmp_path / "up").exists() and not (tmp_path / "evil.txt").exists()


def test_a_non_zip_upload_is_refused(tmp_path):
    (tmp_path / "x.zip").write_text("not a zip")
    with pytest.raises(PathError, match="not a zip file"):
        extract_zip(tmp_path / "x.zip", tmp_path / "up", 1000)


@pytest.mark.parametrize("session", ["..", "../../etc", "/tmp/x", "a/b", "", None, "k3j2h4g5"])
def test_session_folders_stay_directly_under_the_outputs(tmp_path, session):
    # the session id is whatever the client sends; the unload handler deletes this folder
    folder = session_dir(tmp_path, session)
    assert folder.parent == tmp_path and folder.name.isalnum()
    assert session_dir(tmp_path, session) == folder  # a session keeps its folder
    assert session_dir(tmp_path, "other-session") != folder


def test_the_upload_quota_refuses_beyond_a_clients_hourly_bytes_and_a_full_folder(tmp_path):
    import asyncio

    from cosyn.studio.upload_quota import UploadQuota

    now = [0.0]
    passed = []

    async def app(scope, receive, send):
        passed.append(scope["path"])

    quota = UploadQuota(app, tmp_path, per_client_bytes=100, folder_bytes=150, clock=lambda: now[0])

    def post(path: str, size: int | None, client: str = "1.2.3.4") -> dict | None:
        sent = []

        async def send(message):
            sent.append(message)

        headers = [] if size is None else [(b"content-length", str(size).encode())]
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "client": (client, 1)}
        asyncio.run(quota(scope, None, send))
        return sent[0] if sent else None

    assert post("/gradio_api/upload", 60) is None and post("/gradio_api/upload", 40) is None
    refused = post("/gradio_api/upload", 1)
    assert refused["status"] == 413 and passed == ["/gradio_api/upload"] * 2
    assert post("/gradio_api/queue/join", 10**9) is None  # only uploads are counted
    assert post("/gradio_api/upload", 40, client="5.6.7.8") is None  # another client has its own hour...
    (tmp_path / "stored.bin").write_bytes(b"x" * 140)
    now[0] = 3601.0  # ...the first client's hour has passed, but the folder now holds 140 of 150 bytes
    assert post("/gradio_api/upload", 20)["status"] == 413
    assert post("/gradio_api/upload", None)["status"] == 413  # no declared size: refused
