"""``bench/run_all --json FILE``: the table as a list of rows, the engine against the baseline and each peer.
Speeds are not checked (see test_bench.py); the rows' shape and their arithmetic are."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
KEYS = {"task", "engine", "peer", "ratio", "target", "agreement", "met"}

sys.path.insert(0, str(BENCH))
import common  # noqa: E402


def _run_all():
    loader = importlib.machinery.SourceFileLoader("bench_run_all_json", str(BENCH / "run_all"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def _summary(ratio: float, rows: list[dict], unit: str = "audio-s") -> dict:
    side = {"median_s": 2.0, "per_s": 40.0, "peak_rss_mb": 500.0}
    return {"task": "speech-to-text", "ratio": ratio, "target": 2.0, "agreement": "WER engine 3.8% vs 4.2% (x)",
            "agreement_ok": True, "agreement_score": -0.4, "device": "cpu", "threads": 2, "busy": True,
            "others_cpu_s": 9.0, "unit": unit, "baseline_name": "openai-whisper transcribe()", "rows": rows,
            "sides": {"engine": side, "baseline": {**side, "median_s": 2.0 * ratio}}}


def test_rows_hold_every_comparison_with_its_units_and_verdict() -> None:
    peer = common.peer_row("speech-to-text", "faster-whisper int8", (2.0, "s"), (1.5, "s"), 0.75, 1.0,
                           (0.2, "WER points vs transcribe()"))
    assert peer["met"] is False and peer["ratio"] == 0.75 and peer["engine"] == {"value": 2.0, "unit": "s"}
    untargeted = common.peer_row("text-generation", "llama.cpp F32", (20.0, "tokens/s"), (30.0, "tokens/s"),
                                 0.667, None, (None, "not compared"))
    assert untargeted["met"] is None
    rows = _run_all().json_rows([("speech", _summary(1.5, [peer]), 30.0), ("qa", None, 4.0)])
    assert [r["peer"] for r in rows] == ["openai-whisper transcribe()", "faster-whisper int8", None]
    base = rows[0]
    assert KEYS <= set(base) and base["engine"] == {"value": 2.0, "unit": "s"}
    assert base["peer_value"] == {"value": 3.0, "unit": "s"} and base["met"] is False  # 1.5x < the 2.0x target
    assert base["agreement"] == {"value": -0.4, "measures": "WER engine 3.8% vs 4.2% (x)"} and base["busy"]
    assert rows[2]["failed"] and rows[2]["met"] is False
    tokens = _run_all().json_rows([("generation", _summary(4.0, [], unit="tokens"), 30.0)])[0]
    assert tokens["engine"] == {"value": 40.0, "unit": "tokens/s"} and tokens["met"] is True


def test_run_all_writes_the_json_table(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run_all"), "--quick", "--only", "sentiment", "--threads", "1",
                           "--json", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and KEYS <= set(rows[0]) and rows[0]["task"] == "sentiment"
    row = rows[0]
    assert row["engine"]["unit"] == "s" and row["engine"]["value"] > 0 and row["peer_value"]["value"] > 0
    assert row["ratio"] == pytest.approx(row["peer_value"]["value"] / row["engine"]["value"], rel=0.01)
    assert isinstance(row["met"], bool) and "labels" in row["agreement"]["measures"]
    assert f"wrote 1 rows to {out}" in proc.stdout


def _side(name: str, per_s: float, extra: dict) -> common.SideReport:
    # 64 tokens a round at per_s tokens/s
    return common.SideReport(name, 1.0, (64 / per_s,) * 3, (1.0,) * 3, 64, 100.0, None, extra)


def test_generation_pairs_each_precision_with_llama_cpp_s_file_of_the_same_precision() -> None:
    import generation

    engine = _side("engine", 100.0, {"weights": "fp32", "weight_bytes": 538e6, "batch1_decode_tokens_per_s": 30.0,
                                     "batch1_tokens_per_s": 28.0, "dtype": "torch.float32",
                                     "concurrent_int8": 150.0, "concurrent_int4": 180.0, "concurrent_bf16": 240.0,
                                     "batch1_int8": {"decode_tokens_per_s": 60.0, "bytes_per_token": 135e6},
                                     "batch1_bf16": {"decode_tokens_per_s": 45.0, "bytes_per_token": 269e6}})
    llama = _side("llama", 160.0, {"batch1": {"Q8_0": {"decode_tokens_per_s": 150.0, "bytes": 145e6},
                                              "BF16": {"decode_tokens_per_s": 90.0, "bytes": 270e6}},
                                   "concurrent": {"F32": 80.0, "Q8_0": 200.0, "BF16": 200.0}})
    generation._BANDWIDTH["b"] = 30e9
    rows = {r["peer"]: r for r in generation.rows({"engine": engine, "llama": llama}, {"threads": 2})}
    same = {p: r for p, r in rows.items() if "parallel slots" in p and r["target"] == 1.0}
    assert sorted(same) == ["llama.cpp llama-server BF16, 8 parallel slots (engine bf16 weights)",
                            "llama.cpp llama-server F32, 8 parallel slots (engine fp32 weights)",
                            "llama.cpp llama-server Q4_1, 8 parallel slots (engine int4 weights)",
                            "llama.cpp llama-server Q8_0, 8 parallel slots (engine int8 weights)"]
    assert same["llama.cpp llama-server F32, 8 parallel slots (engine fp32 weights)"]["ratio"] == 1.25
    assert same["llama.cpp llama-server Q8_0, 8 parallel slots (engine int8 weights)"]["met"] is False  # 0.75x
    q4 = same["llama.cpp llama-server Q4_1, 8 parallel slots (engine int4 weights)"]
    assert q4["ratio"] == 1.125 and q4["met"] is True and q4["peer_value"]["value"] == 160.0
    mixed = rows["llama.cpp llama-server Q4_1, 8 parallel slots (engine fp32 weights)"]
    assert mixed["target"] is None and mixed["met"] is None  # different precisions: shown, not judged
    assert rows["llama.cpp Q8_0 batch 1 (engine int8 weights)"]["ratio"] == 0.4
    assert same["llama.cpp llama-server BF16, 8 parallel slots (engine bf16 weights)"]["ratio"] == 1.2
    bf16 = rows["llama.cpp BF16 batch 1 (engine bf16 weights)"]
    assert bf16["ratio"] == 0.5 and bf16["target"] is None  # the issue sets no batch-1 target for bf16
    lines = generation.report({"engine": engine, "llama": llama}, {"threads": 2, "prompts": ["x"] * 8})
    assert any(line.startswith("8 concurrent, int4 weights: engine 180.0 tokens/s; llama.cpp Q4_1") for line in lines)
