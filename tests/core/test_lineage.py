from pathlib import Path

from bayling.core.lineage import directory_sha256, dvc_lock_outs, tokenizer_fingerprint, tokenizer_only_fingerprint

LOCK = """\
schema: '2.0'
stages:
  fetch:
    cmd: python -m stages.fetch
    outs:
    - path: data/raw
      hash: md5
      md5: 1a2b.dir
      size: 10
      nfiles: 3
  train:
    cmd: python -m stages.train
    outs:
    - path: models/final
      hash: md5
      md5: 3c4d.dir
    - path: reports/train/metrics.json
      hash: md5
      md5: 5e6f
"""


def test_dvc_lock_outs(tmp_path: Path):
    (tmp_path / "dvc.lock").write_text(LOCK)
    assert dvc_lock_outs(tmp_path) == {"data/raw": "1a2b.dir", "models/final": "3c4d.dir", "reports/train/metrics.json": "5e6f"}
    assert dvc_lock_outs(tmp_path / "nowhere") == {}


def test_tokenizer_fingerprint_tracks_template_and_length(tokenizer_dir: Path):
    base = tokenizer_fingerprint(tokenizer_dir, "{{ messages }}", 256)
    assert base == tokenizer_fingerprint(tokenizer_dir, "{{ messages }}", 256)
    longer = tokenizer_fingerprint(tokenizer_dir, "{{ messages }}", 512)
    other_template = tokenizer_fingerprint(tokenizer_dir, "{{ messages|tojson }}", 256)
    assert len({base["fingerprint"], longer["fingerprint"], other_template["fingerprint"]}) == 3
    assert tokenizer_only_fingerprint(base) == tokenizer_only_fingerprint(longer)
    assert tokenizer_only_fingerprint(base) != tokenizer_only_fingerprint(other_template)
    assert "tokenizer.json" in base["tokenizer_files"]


def test_directory_sha256_sees_content_and_names(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    first = directory_sha256(tmp_path / "a")
    (tmp_path / "a" / "x.bin").write_bytes(b"2")
    second = directory_sha256(tmp_path / "a")
    (tmp_path / "a" / "x.bin").rename(tmp_path / "a" / "y.bin")
    assert len({first, second, directory_sha256(tmp_path / "a")}) == 3
