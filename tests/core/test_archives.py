import io
import tarfile
from pathlib import Path

import pytest

from bayling.core.archives import UNPACK_FOLDER, data_root, unpacked
from bayling.core.errors import PipelineError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "data/sample/flores200/flores200-devtest.tar.gz"


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_shipped_flores_sample_unpacks_once_into_the_cache(tmp_path: Path):
    folder = unpacked(SHIPPED, tmp_path / "cache")
    files = sorted(p.name for p in (folder / "devtest").iterdir())
    assert files == ["eng_Latn.devtest", "fra_Latn.devtest", "swh_Latn.devtest", "zho_Hans.devtest"]
    assert all(len((folder / "devtest" / f).read_text("utf-8").splitlines()) == 1012 for f in files)
    (folder / "devtest" / "marker").write_text("kept")
    assert unpacked(SHIPPED, tmp_path / "cache") == folder and (folder / "devtest" / "marker").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # no staging folder left behind


def test_a_changed_archive_unpacks_to_a_new_folder(tmp_path: Path):
    archive = _tar(tmp_path / "set.tar.gz", {"a.txt": b"one\n"})
    first = data_root(str(archive), tmp_path)
    _tar(archive, {"a.txt": b"two\n"})
    second = data_root(str(archive), tmp_path)
    assert first != second and (second / "a.txt").read_text() == "two\n"
    assert first.parent == second.parent == tmp_path / UNPACK_FOLDER


def test_an_archive_cannot_write_outside_its_folder(tmp_path: Path):
    archive = _tar(tmp_path / "evil.tar.gz", {"../escaped.txt": b"x"})
    with pytest.raises(PipelineError, match="evil.tar.gz: cannot be unpacked"):
        unpacked(archive, tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists() and not list((tmp_path / "cache").iterdir())


def test_a_missing_or_broken_archive_is_named(tmp_path: Path):
    with pytest.raises(PipelineError, match="missing.tar.gz: file not found"):
        unpacked(tmp_path / "missing.tar.gz", tmp_path)
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(PipelineError, match="broken.tar.gz: cannot be unpacked"):
        unpacked(tmp_path / "broken.tar.gz", tmp_path)


def test_no_archive_means_the_project_root(tmp_path: Path):
    assert data_root(None, tmp_path) == tmp_path
