"""The fetch stage as a user runs it (`python -m stages.fetch`, here through runpy in the test's interpreter) over a
params.yaml, with bad input and an S3 source."""

import json
from pathlib import Path

import pytest
import yaml
from helpers import StageRun, run_stage_here

pytestmark = pytest.mark.integration

MALFORMED = [
    b'{"id": "ok-1", "texts": {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains."}}',
    b'{"id": "bad-json", "texts": {"eng_Latn": "Stay home."',
    b'{"id": "no-fr", "texts": {"eng_Latn": "Only English here."}}',
    b'{"id": "empty", "texts": {"eng_Latn": "Cough into your elbow.", "fra_Latn": "   "}}',
    b'{"id": "latin1", "texts": {"eng_Latn": "Caf\xe9", "fra_Latn": "Caf\xe9"}}',
    b'{"id": "ok-2", "texts": {"eng_Latn": "Keep your distance.", "fra_Latn": "Gardez vos distances."}}',
    b'{"id": "ok-1", "texts": {"eng_Latn": "Same id again.", "fra_Latn": "Encore le meme id."}}',
]


def run_fetch(project: Path, env=None) -> StageRun:
    return run_stage_here(project, "fetch", env=env)


def set_sources(project: Path, sources: list, **fetch_overrides) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"]["sources"] = sources
    params["fetch"].update(fetch_overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_malformed_lines_are_quarantined_exactly(project_copy: Path):
    (project_copy / "data" / "bad.jsonl").write_bytes(b"\n".join(MALFORMED) + b"\n")
    set_sources(
        project_copy,
        [{"name": "bad", "format": "jsonl", "uri": "data/bad.jsonl", "languages": ["eng_Latn", "fra_Latn"]}],
        max_quarantine_fraction=0.9,
    )
    result = run_fetch(project_copy)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    manifest = json.loads((project_copy / "data" / "raw" / "manifest.json").read_text())
    (entry,) = manifest["inputs"]
    assert (entry["rows_in"], entry["rows_kept"], entry["rows_quarantined"]) == (7, 2, 5)
    assert manifest["totals"] == {"rows_in": 7, "rows_kept": 2, "rows_quarantined": 5}
    assert entry["files"][0]["sha256"] and entry["files"][0]["origin"] == "local"
    quarantined = [json.loads(line) for line in (project_copy / "data" / "raw" / "quarantine.jsonl").read_text().splitlines()]
    by_line = {q["line"]: q for q in quarantined}
    assert sorted(by_line) == [2, 3, 4, 5, 7]
    assert all(q["file"] == "data/bad.jsonl" for q in quarantined)
    assert by_line[2]["reason"].startswith("invalid JSON")
    assert (by_line[3]["field"], by_line[3]["reason"]) == ("texts.fra_Latn", "missing language")
    assert (by_line[4]["field"], by_line[4]["reason"]) == ("texts.fra_Latn", "empty text")
    assert by_line[5]["reason"].startswith("invalid UTF-8")
    assert (by_line[7]["field"], by_line[7]["reason"]) == ("id", "duplicate id 'bad:ok-1'")
    corpus = [json.loads(line) for line in (project_copy / "data" / "raw" / "corpus.jsonl").read_text().splitlines()]
    assert [row["id"] for row in corpus] == ["bad:ok-1", "bad:ok-2"]
    assert "data/bad.jsonl:2: invalid JSON" in result.stderr


def test_too_much_quarantine_keeps_the_previous_corpus_and_reports_beside_it(project_copy: Path):
    good = project_copy / "data" / "raw"
    assert run_fetch(project_copy).returncode == 0
    before = {name: (good / name).read_bytes() for name in ("corpus.jsonl", "manifest.json", "quarantine.jsonl")}
    (project_copy / "data" / "bad.jsonl").write_bytes(b"\n".join(MALFORMED) + b"\n")
    set_sources(project_copy, [{"name": "bad", "format": "jsonl", "uri": "data/bad.jsonl"}], max_quarantine_fraction=0.5)
    result = run_fetch(project_copy)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "above fetch.max_quarantine_fraction=0.5; the previous corpus stays in place" in result.stderr
    assert {name: (good / name).read_bytes() for name in before} == before
    report = json.loads((good / "failed" / "manifest.json").read_text())
    assert report["totals"]["rows_in"] == report["totals"]["rows_kept"] + report["totals"]["rows_quarantined"] == 7
    assert report["refused"].startswith("71.4% of rows were quarantined")
    assert len((good / "failed" / "quarantine.jsonl").read_text().splitlines()) == 5
    assert not (good / ".incoming").exists()



def test_the_log_names_where_quarantined_rows_are_when_the_fetch_is_refused_and_when_not(project_copy: Path):
    """More quarantined rows than the log shows one by one: the log points at the file that holds them, which a
    refused fetch writes into data/raw/failed/."""
    rows = [f'{{"id": {i}, "texts": {{"eng_Latn": "Yes {i}.", "eng_Latn": "No.", "fra_Latn": "Oui."}}}}' for i in range(8)]
    rows.append('{"id": "ok", "texts": {"eng_Latn": "Maybe.", "fra_Latn": "Peut-etre."}}')
    (project_copy / "data" / "rep.jsonl").write_text("\n".join(rows) + "\n")
    raw = project_copy / "data" / "raw"
    set_sources(project_copy, [{"name": "rep", "format": "jsonl", "uri": "data/rep.jsonl"}], max_quarantine_fraction=0.5)
    refused = run_fetch(project_copy)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len((raw / "failed" / "quarantine.jsonl").read_text().splitlines()) == 8 and not (raw / "quarantine.jsonl").exists()
    assert "3 more quarantined rows are listed in data/raw/failed/quarantine.jsonl" in refused.stderr
    assert "listed in data/raw/quarantine.jsonl" not in refused.stderr
    assert json.loads((raw / "failed" / "manifest.json").read_text())["quarantine"]["path"] == "data/raw/failed/quarantine.jsonl"
    set_sources(project_copy, [{"name": "rep", "format": "jsonl", "uri": "data/rep.jsonl"}], max_quarantine_fraction=0.95)
    accepted = run_fetch(project_copy)
    assert accepted.returncode == 0, accepted.stderr
    assert "3 more quarantined rows are listed in data/raw/quarantine.jsonl" in accepted.stderr
    assert len((raw / "quarantine.jsonl").read_text().splitlines()) == 8 and not (raw / "failed").exists()
    assert json.loads((raw / "manifest.json").read_text())["quarantine"]["path"] == "data/raw/quarantine.jsonl"

HOSTILE = {
    "nul": "Wash\x00your hands.",
    "bell": "Wash your\x07 hands.",
    "c1": "Wash your\x85 hands.",
    "ansi": "Wash your \x1b[31mhands\x1b[0m.",
    "bidi": "Wash your \u202ehands.",
}


def test_hostile_text_never_becomes_training_data(project_copy: Path):
    en = "\n".join(["Keep your distance.", *HOSTILE.values(), "Stay home."]) + "\n"
    fr = "\n".join(["Gardez vos distances."] + ["Lavez-vous les mains."] * len(HOSTILE) + ["Restez chez vous."]) + "\n"
    (project_copy / "data" / "h.en").write_text(en)
    (project_copy / "data" / "h.fr").write_text(fr)
    # UTF-16 with a byte-order mark is decoded; without one its NUL bytes are quarantined, row by row
    (project_copy / "data" / "u16.tsv").write_bytes("eng_Latn\tfra_Latn\nThank you.\tMerci.\nGood night.\tBonne nuit.\n".encode("utf-16"))
    (project_copy / "data" / "u16-nobom.tsv").write_bytes("Thank you.\tMerci.\nGood night.\tBonne nuit.\n".encode("utf-16-le"))
    # old Mac line endings are three rows, not one; a repeated key in a JSON row is anyone's guess
    (project_copy / "data" / "cr.tsv").write_bytes(b"One.\tUn.\rTwo.\tDeux.\rThree.\tTrois.\r")
    (project_copy / "data" / "rep.jsonl").write_text('{"id": 1, "texts": {"eng_Latn": "Yes.", "eng_Latn": "No.", "fra_Latn": "Oui."}}\n'
                                                     '{"id": 2, "texts": {"eng_Latn": "Maybe.", "fra_Latn": "Peut-être."}}\n')
    tsv = {"format": "tsv", "columns": ["eng_Latn", "fra_Latn"]}
    set_sources(project_copy, [
        {"name": "h", "format": "parallel", "files": {"eng_Latn": "data/h.en", "fra_Latn": "data/h.fr"}},
        {"name": "u16", "uri": "data/u16.tsv", **tsv}, {"name": "nobom", "uri": "data/u16-nobom.tsv", **tsv},
        {"name": "cr", "uri": "data/cr.tsv", **tsv}, {"name": "rep", "format": "jsonl", "uri": "data/rep.jsonl"},
    ], max_quarantine_fraction=0.9)
    result = run_fetch(project_copy)
    assert result.returncode == 0, result.stderr
    manifest = {i["name"]: i for i in json.loads((project_copy / "data/raw/manifest.json").read_text())["inputs"]}
    assert (manifest["h"]["rows_kept"], manifest["h"]["rows_quarantined"]) == (2, 5)
    assert manifest["h"]["quarantine_reasons"] == {"NUL byte in text": 1, "control character": 2, "ANSI escape sequence in text": 1,
                                                   "bidi control": 1}
    assert manifest["u16"]["files"][0]["encoding"] == "utf-16-le" and manifest["u16"]["header_rows_skipped"] == 1
    assert (manifest["u16"]["rows_in"], manifest["u16"]["rows_kept"]) == (2, 2)
    assert manifest["nobom"]["rows_kept"] == 0 and manifest["nobom"]["rows_quarantined"] == manifest["nobom"]["rows_in"] >= 2
    assert manifest["cr"]["files"][0]["line_endings"] == "cr" and manifest["cr"]["rows_kept"] == 3
    assert manifest["rep"]["quarantine_reasons"] == {"repeated key": 1} and manifest["rep"]["rows_kept"] == 1
    corpus = (project_copy / "data/raw/corpus.jsonl").read_text()
    assert "\\u0000" not in corpus and "\x00" not in corpus and "\u202e" not in corpus and "\x1b" not in corpus
    texts = [json.loads(line)["texts"] for line in corpus.splitlines()]
    assert {"eng_Latn": "Thank you.", "fra_Latn": "Merci."} in texts and {"eng_Latn": "Three.", "fra_Latn": "Trois."} in texts


def test_bad_params_fail_before_any_work(project_copy: Path):
    set_sources(
        project_copy,
        [{"name": "x", "format": "parallel", "files": {"eng_latn": "data/none.en", "fra_Latn": "data/none.fr"}}],
        dedupe="maybe",
    )
    result = run_fetch(project_copy)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "2 problems in params.yaml" in result.stderr
    assert "fetch.sources[0].files.eng_latn: unknown FLORES-200 language code 'eng_latn'; did you mean 'eng_Latn'?" in result.stderr
    assert "fetch.dedupe: Input should be a valid boolean" in result.stderr
    assert not (project_copy / "data" / "raw").exists()


def test_sha256_mismatch_stops_the_stage(project_copy: Path):
    files = {"eng_Latn": "data/sample/tico19/tico19.eng_Latn.txt", "fra_Latn": "data/sample/tico19/tico19.fra_Latn.txt"}
    set_sources(project_copy, [{"name": "t", "format": "parallel", "files": files, "sha256": {files["eng_Latn"]: "0" * 64}}])
    result = run_fetch(project_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{files['eng_Latn']}: sha256 is " in result.stderr and "but params.yaml expects 0000" in result.stderr


def test_s3_source_through_a_real_endpoint(project_copy: Path, s3_env: str, monkeypatch):
    import os

    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="corpora")
    body = b"hello\tbonjour\nthank you\tmerci\n"
    s3.put_object(Bucket="corpora", Key="pairs/en-fr.tsv", Body=body)
    set_sources(
        project_copy,
        [{"name": "remote", "format": "tsv", "uri": "s3://corpora/pairs/en-fr.tsv", "columns": ["eng_Latn", "fra_Latn"]}],
        s3_endpoint_url=s3_env,
    )
    result = run_fetch(project_copy, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project_copy / "data" / "raw" / "manifest.json").read_text())
    (info,) = manifest["inputs"][0]["files"]
    import hashlib

    assert info["origin"] == "s3" and info["sha256"] == hashlib.sha256(body).hexdigest()
    assert info["etag"] == s3.head_object(Bucket="corpora", Key="pairs/en-fr.tsv")["ETag"].strip('"')
    assert manifest["totals"] == {"rows_in": 2, "rows_kept": 2, "rows_quarantined": 0}
