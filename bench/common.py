"""What every benchmark shares: two sides (the engine and the plain library baseline), each in its own process, timed
on the same inputs in alternating rounds; the median of the rounds, load time apart, peak memory beside it; an
agreement check between their outputs; ``ratio: N.NN`` as the last line printed.

A benchmark script defines its inputs (``prepare``, run once in the parent: it builds or finds the models and writes
the workload into a JSON config), one class per side (load in ``__init__``, ``warmup()``, ``run() -> outputs``), and
``compare(baseline_outputs, engine_outputs) -> Agreement``; then calls :func:`main`. The parent starts one child
process per side (``--side NAME``), which loads its model and then obeys one command per line on stdin
(``warmup``, ``round``, ``extra``, ``quit``), answering one JSON line each on the protocol pipe. Rounds alternate
between the sides (baseline, engine, then engine, baseline, ...) so that a load drifting on a shared machine falls
on both alike. Why separate processes: torch and other runtimes in one process slow each other down (thread pools,
allocators), and each process's peak resident memory (``VmHWM``) is then its own.

The device is chosen like the engine's ``auto``: CUDA when a GPU is visible, else the CPU, so the same scripts report
absolute figures on a GPU unchanged. Threads: ``--threads`` (default: every core) for both sides alike.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_PREFIX = "@@bench "
OTHERS_BUSY = 0.2  # other processes using more than a fifth of a core meanwhile make the timings unreliable
GiB = 1024**3
MiB = 1024**2

if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ on the path, not the repository
    sys.path.insert(0, str(ROOT))


# --- measuring ----------------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark (``VmHWM``), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # ru_maxrss is KiB on Linux

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pick_device(requested: str = "auto") -> str:
    """``cuda`` when a GPU is visible (and not refused), else ``cpu``."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def cache_dir() -> Path:
    """Where benchmark models and inputs are built once: ``$LLM_LAB_BENCH_CACHE`` or the engine's cache + bench/."""
    if os.environ.get("LLM_LAB_BENCH_CACHE"):
        return Path(os.environ["LLM_LAB_BENCH_CACHE"]).expanduser()
    from engine.config import default_cache_dir

    return default_cache_dir() / "bench"


def measure_read_bandwidth(threads: int, device: str = "cpu", gib: float = 1.0, repeats: int = 7) -> float:
    """Memory read bandwidth in bytes/s: the best of ``repeats`` sums over a buffer far larger than the caches (every
    byte read once per sum, as decoding reads every weight once per token), with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    n = int(gib * GiB) // 4
    x = torch.ones(n, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        x.sum()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    del x
    return n * 4 / best


def normalise_words(text: str) -> list[str]:
    """Words for a word error rate: whisper's English normaliser (numbers, spellings, punctuation, case)."""
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after :func:`normalise_words`."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / max(1, len(ref))


# --- results ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Agreement:
    """How far the engine's outputs agree with the baseline's (fp32, one at a time)."""

    score: float  # the headline figure: fraction identical, or for speech the WER difference in points
    summary: str  # e.g. "512/512 labels identical"
    ok: bool  # within what the issue asks


@dataclasses.dataclass(frozen=True)
class SideReport:
    name: str
    load_s: float
    rounds_s: tuple[float, ...]
    cpu_s: tuple[float, ...]  # CPU time of the side's process (all its threads) in each round
    units: float  # work units per round (tokens, sentences, seconds of audio...)
    peak_rss_mb: float
    cuda_peak_mb: float | None
    extra: dict

    @property
    def median_s(self) -> float:
        return statistics.median(self.rounds_s)

    @property
    def per_s(self) -> float:
        return self.units / self.median_s if self.median_s > 0 else 0.0


# --- the child: one side in its own process -----------------------------------------------------------------------
class Side:
    """One side of a benchmark. ``__init__(config, args)`` loads the model (timed as load time); ``run()`` does the
    whole workload once and returns JSON-able outputs for :func:`compare`; ``warmup()`` runs a small piece of it."""

    def __init__(self, config: dict, args: argparse.Namespace) -> None:
        self.config, self.args = config, args

    def warmup(self) -> None:
        pass

    def run(self) -> list:
        raise NotImplementedError

    def extra(self) -> dict:
        """Further figures, measured after the timed rounds (e.g. the engine's batch-1 speed)."""
        return {}


def _load(side_class: type[Side], config: dict, args: argparse.Namespace) -> tuple[Side, dict]:
    import torch

    torch.set_num_threads(args.threads)
    args.device = pick_device(args.device)
    t0 = time.perf_counter()
    side = side_class(config, args)
    sync(args.device)
    return side, {"loaded": time.perf_counter() - t0, "device": args.device}


def _handle(side: Side, command: str, args: argparse.Namespace) -> dict:
    """One protocol command: ``warmup``, ``round`` / ``round outputs``, ``extra``, ``quit``."""
    if command == "warmup":
        side.warmup()
        sync(args.device)
        return {"ok": True}
    if command.startswith("round"):
        t0, c0 = time.perf_counter(), time.process_time()
        outputs = side.run()
        sync(args.device)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"seconds": seconds, "cpu": cpu, "outputs": outputs if command == "round outputs" else None}
    if command == "extra":
        return {"extra": side.extra()}
    if command == "quit":
        import torch

        cuda = torch.cuda.max_memory_allocated() / MiB if args.device.startswith("cuda") else None
        return {"peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda}
    raise ValueError(f"unknown command {command!r}")


def _child(sides: dict[str, type[Side]], args: argparse.Namespace) -> None:
    # Protocol messages go to the original stdout; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(PROTOCOL_PREFIX + json.dumps(message) + "\n")

    try:
        side, loaded = _load(sides[args.side], json.loads(Path(args.config).read_text()), args)
        send(loaded)
        for line in sys.stdin:
            send(_handle(side, line.strip(), args))
            if line.strip() == "quit":
                return
    except BaseException as e:  # the parent reports it and fails the benchmark
        traceback.print_exc()
        send({"error": f"{type(e).__name__}: {e}"})
        raise SystemExit(1)


class _InProcess:
    """``--in-process`` (a quick smoke test only): the side runs in the parent itself, so both sides share one
    process, its threads and its peak memory. Same interface as :class:`_Process`."""

    def __init__(self, side_class: type[Side], config: dict, args: argparse.Namespace) -> None:
        self.args = args
        self.side, self._loaded = _load(side_class, config, args)

    def receive(self) -> dict:
        return self._loaded

    def ask(self, command: str) -> dict:
        return _handle(self.side, command, self.args)

    def close(self) -> None:
        engine = getattr(self.side, "engine", None)
        if engine is not None:  # its workers' threads would outlive the benchmark in this process
            engine.close()
        self.side = None


class _Process:
    """The parent's handle on one side's child process."""

    def __init__(self, script: Path, side: str, config_path: Path, args: argparse.Namespace,
                 env: dict[str, str]) -> None:
        self.side = side
        command = [sys.executable, str(script), "--side", side, "--config", str(config_path),
                   "--threads", str(args.threads), "--device", args.device]
        if args.quick:
            command.append("--quick")
        child_env = {**os.environ, **env, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env,
                                     cwd=ROOT)

    def receive(self) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                message = json.loads(line[len(PROTOCOL_PREFIX):])
                if "error" in message:
                    raise RuntimeError(f"the {self.side} side failed: {message['error']}")
                return message
        raise RuntimeError(f"the {self.side} side exited (status {self.proc.wait()}) without answering")

    def ask(self, command: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the parent ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Benchmark:
    """One task's benchmark, as a script declares it."""

    task: str
    target: float  # the ratio the issue asks for
    workload: str | Callable[[dict], str]  # in words, for the report (or made from the config)
    prepare: Callable[[argparse.Namespace], dict]  # parent: build/find models, make the inputs -> config for sides
    sides: dict[str, type[Side]]  # "baseline" and "engine"
    compare: Callable[[list, list, dict], Agreement]  # (baseline outputs, engine outputs, config)
    units: Callable[[list, dict], float]  # work units in one round's outputs (e.g. tokens), for throughput
    unit: str = "items"
    report: Callable[[dict[str, SideReport], dict], list[str]] | None = None  # extra lines (e.g. bandwidth bound)
    engine_env: dict[str, str] = dataclasses.field(default_factory=dict)
    script: str = ""  # the script's file (``__file__``), run again as each side's process
    # Sides beyond "baseline" and "engine" are peers (another library a user might pick instead): each runs in its own
    # process in the same rounds. ``baseline_name`` names the baseline in tables; ``rows(reports, config)`` returns
    # further table rows (see :func:`peer_row`), e.g. the engine against each peer, for ``bench/run_all --json``.
    baseline_name: str = ""
    rows: Callable[[dict[str, SideReport], dict], list[dict]] | None = None


def _busy_cpu_s() -> float | None:
    """CPU-seconds all processes have used since boot (Linux ``/proc/stat``: user, nice, system, irq, softirq and
    steal, which is time the hypervisor gave to other machines); None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU-seconds of this process and its finished children (the sides' processes, once reaped)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Engine versus the plain library calls, one side per process.")
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs, one round (a smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per side (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per side (default: every core)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda")
    parser.add_argument("--engine-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for the engine's process, e.g. LLM_LAB_QUANTIZE=0 (repeatable)")
    parser.add_argument("--in-process", action="store_true",
                        help="both sides in this one process (faster to start; for smoke tests, not for figures)")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.threads = args.threads or len(os.sched_getaffinity(0))
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def main(bench: Benchmark, argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side:
        _child(bench.sides, args)
        return
    script = Path(bench.script).resolve()
    started, busy_before, own_before = time.perf_counter(), _busy_cpu_s(), _own_cpu_s()
    t0 = time.perf_counter()
    config = bench.prepare(args)
    prepare_s = time.perf_counter() - t0
    engine_env = dict(bench.engine_env)
    engine_env.update(kv.split("=", 1) for kv in args.engine_env)
    with tempfile.TemporaryDirectory(prefix="llm-lab-bench-") as scratch:
        config_path = Path(scratch, "config.json")
        config_path.write_text(json.dumps(config))
        procs: dict[str, _Process | _InProcess] = {}
        try:
            loads, devices = {}, {}
            for name, side_class in bench.sides.items():  # one after the other: neither load slows the other
                if args.in_process:
                    if name == "engine":
                        os.environ.update(engine_env)
                    procs[name] = _InProcess(side_class, config, args)
                else:
                    procs[name] = _Process(script, name, config_path, args, engine_env if name == "engine" else {})
                loaded = procs[name].receive()
                loads[name], devices[name] = loaded["loaded"], loaded["device"]
                _progress(f"{bench.task}: {name} loaded in {loads[name]:.1f} s")
            args.device = devices["engine"]
            for p in procs.values():
                p.ask("warmup")
            rounds: dict[str, list[float]] = {name: [] for name in procs}
            cpu: dict[str, list[float]] = {name: [] for name in procs}
            outputs: dict[str, list] = {}
            order = list(procs)
            for r in range(args.rounds):
                for name in order if r % 2 == 0 else order[::-1]:
                    answer = procs[name].ask("round outputs" if r == 0 else "round")
                    rounds[name].append(answer["seconds"])
                    cpu[name].append(answer["cpu"])
                    _progress(f"{bench.task}: round {r + 1} {name} {answer['seconds']:.2f} s")
                    if r == 0:
                        outputs[name] = answer["outputs"]
            extras = {name: p.ask("extra")["extra"] for name, p in procs.items()}
            ends = {name: p.ask("quit") for name, p in procs.items()}
        finally:
            for p in procs.values():
                p.close()
    reports = {name: SideReport(name, loads[name], tuple(rounds[name]), tuple(cpu[name]),
                                bench.units(outputs[name], config), ends[name]["peak_rss_mb"],
                                ends[name]["cuda_peak_mb"], extras[name])
               for name in procs}
    agreement = bench.compare(outputs["baseline"], outputs["engine"], config)
    base, eng = reports["baseline"], reports["engine"]
    ratio = eng.per_s / base.per_s if base.per_s else 0.0
    workload = bench.workload(config) if callable(bench.workload) else bench.workload
    lines = [f"{bench.task}: {workload}",
             f"device {args.device}, {args.threads} threads, {args.rounds} rounds (median), warm-up excluded; "
             f"inputs/models prepared in {prepare_s:.1f} s"]
    for rep in (base, eng):
        rounds_text = ", ".join(f"{s:.2f}" for s in rep.rounds_s)
        cuda = f", CUDA peak {rep.cuda_peak_mb:.0f} MiB" if rep.cuda_peak_mb is not None else ""
        lines.append(f"  {rep.name:8s} median {rep.median_s:7.2f} s ({rounds_text}) = {rep.per_s:8.1f} {bench.unit}/s"
                     f"; CPU {statistics.median(rep.cpu_s):.2f} s; load {rep.load_s:.1f} s; peak RSS "
                     f"{rep.peak_rss_mb:.0f} MiB{cuda}")
    lines.append(f"  agreement: {agreement.summary}" + ("" if agreement.ok else "  [BELOW WHAT THE ISSUE ASKS]"))
    if bench.report:
        lines += [f"  {line}" for line in bench.report(reports, config)]
    # others' work while ours ran: the machine's CPU time (steal included) less our own processes'
    wall, busy_after = time.perf_counter() - started, _busy_cpu_s()
    others = None if busy_before is None else max(0.0, busy_after - busy_before - (_own_cpu_s() - own_before))
    busy = others is not None and others > OTHERS_BUSY * wall
    lines.append(f"  target {bench.target:.1f}x: {'met' if ratio >= bench.target else 'NOT MET'}; total {wall:.0f} s"
                 + ("" if others is None else f"; other processes used {others:.1f} CPU-s meanwhile "
                                              f"({others / wall:.0%} of a core)")
                 + (" (THE MACHINE WAS BUSY: timings are not reliable)" if busy else ""))
    summary = {"task": bench.task, "ratio": round(ratio, 3), "target": bench.target, "agreement": agreement.summary,
               "agreement_ok": agreement.ok, "agreement_score": agreement.score, "device": args.device,
               "threads": args.threads, "quick": args.quick, "busy": busy, "others_cpu_s": others,
               "in_process": args.in_process, "unit": bench.unit, "baseline_name": bench.baseline_name,
               "rows": bench.rows(reports, config) if bench.rows else [],
               "sides": {name: {"median_s": rep.median_s, "rounds_s": rep.rounds_s, "load_s": rep.load_s,
                                "per_s": rep.per_s, "peak_rss_mb": rep.peak_rss_mb, "cuda_peak_mb": rep.cuda_peak_mb,
                                "extra": rep.extra} for name, rep in reports.items()}}
    print("\n".join(lines))
    print("result: " + json.dumps(summary))
    print(f"ratio: {ratio:.2f}", flush=True)


def peer_row(task: str, peer: str, engine: tuple[float, str], peer_value: tuple[float, str], ratio: float,
             target: float | None, agreement: tuple[float | None, str], agreement_ok: bool = True) -> dict:
    """One row of ``bench/run_all --json``: the engine against one peer. ``engine`` and ``peer_value`` are
    (value, unit), seconds or a throughput; ``ratio`` is peer time / engine time (above 1: the engine is faster);
    ``agreement`` is (number, what it measures); ``target`` None where the issue sets none (then ``met`` is None)."""
    met = None if target is None else bool(ratio >= target and agreement_ok)
    return {"task": task, "engine": {"value": round(engine[0], 4), "unit": engine[1]}, "peer": peer,
            "peer_value": {"value": round(peer_value[0], 4), "unit": peer_value[1]}, "ratio": round(ratio, 3),
            "target": target, "agreement": {"value": agreement[0], "measures": agreement[1]},
            "agreement_ok": agreement_ok, "met": met}


def engine_settings(args: argparse.Namespace, **overrides: Any):
    """The engine's default settings from the environment, on this benchmark's device and threads, offline."""
    from engine.config import Settings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Settings.from_env(device=args.device, threads=args.threads, **overrides)


def experiment_int8(served: Any) -> None:
    """``BENCH_INT8=x86|onednn|fbgemm`` (engine side only): swap the served model's Linear layers for dynamic int8
    ones with that quantized engine, to measure the change before a task module makes it. Off when unset."""
    backend = os.environ.get("BENCH_INT8")
    if not backend:
        return
    import torch

    torch.backends.quantized.engine = backend
    served.model = torch.ao.quantization.quantize_dynamic(served.model, {torch.nn.Linear}, dtype=torch.qint8)
    _progress(f"experiment: {type(served.model).__name__} Linear layers dynamic int8 ({backend})")


def path_registry(*specs: Any):
    """The built-in registry plus the benchmark's own models (``ModelSpec(..., source="path:...")``)."""
    from engine.registry import Registry

    registry = Registry()
    for spec in specs:
        registry.add(spec)
    return registry
