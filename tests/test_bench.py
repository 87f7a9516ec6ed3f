"""The benchmarks under bench/ run. Each script, in its tiny ``--quick`` mode, measures both sides and ends with a
``ratio:`` line; here the two sides share this process (``--in-process``, to start fast), and one script also runs
as bench/run_all does, each side in its own process. Speeds are not checked (the machine is shared, and --quick
models are too small to say anything): bench/run_all on the full workloads does that."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SCRIPTS = ("generation", "sentiment", "qa", "translation", "speech", "embeddings", "pretrain")

sys.path.insert(0, str(BENCH))
import common  # noqa: E402


def _load(name: str, path: Path):
    loader = importlib.machinery.SourceFileLoader(f"bench_{name}", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def _result(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert re.fullmatch(r"ratio: \d+\.\d\d", lines[-1]), lines[-3:]
    result = json.loads(next(line for line in lines if line.startswith("result: "))[len("result: "):])
    assert float(lines[-1].split()[1]) == pytest.approx(result["ratio"], abs=0.006)
    for side in ("engine", "baseline"):
        assert result["sides"][side]["median_s"] > 0
        assert result["sides"][side]["peak_rss_mb"] > 50
    assert result["quick"] and result["agreement"]
    return result


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_prints_a_ratio_last(script: str, capsys: pytest.CaptureFixture, keep_threads) -> None:
    module = _load(script, BENCH / f"{script}.py")
    common.main(module.BENCH, ["--quick", "--in-process", "--threads", "1"])
    result = _result(capsys.readouterr().out)
    assert result["task"] == module.BENCH.task and result["in_process"]


def test_run_all_runs_each_side_in_its_own_process() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "run_all"), "--quick", "--only", "sentiment", "--threads", "1"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"^sentiment\s+\d+\.\d\dx", proc.stdout, re.MULTILINE), proc.stdout
    assert "ratio: " in proc.stdout and "peak RSS" in proc.stdout


def test_run_all_refuses_an_unknown_benchmark() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "run_all"), "--only", "nonexistent"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode != 0 and "unknown benchmark" in proc.stderr


def test_run_all_table_marks_failures_and_shortfalls() -> None:
    run_all = _load("run_all", BENCH / "run_all")
    side = {"median_s": 1.0, "peak_rss_mb": 500.0}
    ok = {"task": "sentiment", "ratio": 4.2, "target": 5.0, "agreement": "512/512 labels identical (max 0)",
          "agreement_ok": True, "sides": {"engine": side, "baseline": side}}
    text = run_all.table([("sentiment", ok, 12.0), ("qa", None, 3.0)])
    assert "4.20x (short)" in text and "512/512 labels identical" in text and "FAILED" in text


def test_word_error_rate() -> None:
    assert common.word_error_rate("The cat sat on the mat.", "the cat sat on the mat") == 0
    assert common.word_error_rate("the cat sat down", "the bat sat") == pytest.approx(0.5)  # 1 sub, 1 del
    assert common.word_error_rate("a b", "a b c d") == pytest.approx(1.0)
