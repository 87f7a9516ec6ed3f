"""Device and dtype policy, decided in one place with a reason a person can read.

``auto`` picks CUDA (bf16 where the GPU supports it, else fp16), then Apple MPS (fp16), then the CPU (fp32).

The sentiment classifiers and sentence encoders (``encoder_dtype``) follow the same dtype, with one exception chosen
by measurement: on a CPU with bf16 dot-product units (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo, detected,
never assumed) they run in bf16 when the dtype is ``auto``. Measured on an AMD EPYC with avx512_bf16 (no AMX), 2
threads: the bundled fine-tuned classifier (minilm-reviews) classified 587 texts 2.0x faster than fp32, with 75/75
identical labels on its held-out reviews and 586/587 overall (largest probability change 0.024); the packaged
all-MiniLM-L6-v2's sentence vectors kept a cosine similarity above 0.99 with fp32 (bench/sentiment.py and
bench/embeddings.py print both on every run). Dynamic int8 was measured too and refused: 69/75 labels and vectors
down to cosine 0.83 (per-tensor activation scales cannot hold these encoders' outlier activations). Extractive QA
follows too, judged on the bundled QA model (minilm-qa: the packaged MiniLM fine-tuned in the app,
engine.training.bundled_qa): 440/440 identical answer spans on its 40 hand-written held-out questions and 400
generated ones, 98/100 on the benchmark's nonsense pairs (near ties; largest score change 0.046), 1.5-1.7x faster
(bench/qa.py prints both on every run). Whisper's audio encoder follows
``encoder_dtype`` on the CPU too (the packaged whisper-base's transcript kept its word error rate, bench/speech.py).
Generation's precision is its own setting (``weights``, engine.weights), and so is whisper's decoder's
(``speech_weights``, :func:`engine.weights.resolve_speech_weights`).
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class DevicePolicy:
    """Where models run and in which precision, with the reason for the choice."""

    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: torch.dtype
    reason: str
    threads: int
    encoder_dtype: torch.dtype | None = None  # sentiment classifiers and sentence encoders (None: ``dtype``)
    encoder_reason: str = ""

    def __post_init__(self) -> None:
        if self.encoder_dtype is None:
            object.__setattr__(self, "encoder_dtype", self.dtype)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def encoder_dtype_name(self) -> str:
        return str(self.encoder_dtype).removeprefix("torch.")

    def describe(self) -> str:
        encoders = "" if self.encoder_dtype == self.dtype else (
            f"; sentiment, QA, embedding and whisper's audio encoders in {self.encoder_dtype_name} "
            f"({self.encoder_reason})")
        return f"{self.device} · {self.dtype_name} · {self.threads} CPU threads — {self.reason}{encoders}"


@lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx() -> bool:
    """True when the CPU has AMX bf16 tile units (Intel Sapphire Rapids and later)."""
    return "amx_bf16" in cpu_features()


def cpu_bf16_units() -> str | None:
    """The CPU's bf16 dot-product instructions by their /proc/cpuinfo flag (``amx_bf16``, ``avx512_bf16``), or None
    when it has neither (bf16 is then emulated, and slower than fp32)."""
    flags = cpu_features()
    return next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), None)


@lru_cache(maxsize=1)
def _libgomp() -> "ctypes.CDLL | None":
    """The GNU OpenMP runtime that torch's CPU kernels run on (Linux builds ship it in torch/lib), else None."""
    for path in sorted((Path(torch.__file__).parent / "lib").glob("libgomp*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
            lib.omp_pause_resource_all.argtypes = [ctypes.c_int]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def release_cpu_threads() -> None:
    """Let the calling thread's OpenMP worker threads go, before the thread idles.

    Every Python thread that runs torch on the CPU gets its own OpenMP team. GNU OpenMP counts the threads of all
    teams, and once they outnumber the cores it makes every team's threads sleep between parallel regions instead
    of spinning, so each small kernel pays a wake-up: a decoding step in a model's worker thread ran 1.4 to 1.8x
    slower while an idle thread (the one that had loaded the model) kept its team (bench/README.md). Releasing the
    team of a thread that goes idle keeps the count at what is really working; the next parallel region in that
    thread builds a new team, which costs microseconds. Only GNU OpenMP is touched (its pause frees the calling
    thread's team alone); elsewhere this does nothing.
    """
    lib = _libgomp()
    if lib is not None:
        lib.omp_pause_resource_all(1)  # omp_pause_soft


def limit_numpy_blas_threads() -> int | None:
    """Give numpy's BLAS (every BLAS library loaded but torch's own) one thread; returns how many it had, or None
    when nothing changed.

    The engine's numpy products are small (a search's 10,000 x 384 scores, a similarity matrix of at most 1,000 x
    1,000) and run beside torch's workers, which own the cores. OpenBLAS keeps its threads spinning for a while after
    each call, and on a 2-core CPU they took the cores from the worker encoding the next query: a search over 10,000
    cached sentences took 110.6 ms (median of 21) with numpy's two BLAS threads and 28.2 ms with one
    (bench/README.md, the AMX Xeon).
    Left alone where the user chose BLAS threads (``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS``; OpenBLAS also
    follows ``OMP_NUM_THREADS``, which is set for torch), or where threadpoolctl is missing."""
    if any(os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        return None
    try:
        import numpy  # noqa: F401 (threadpoolctl finds the BLAS libraries already loaded)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    torch_dir = str(Path(torch.__file__).parent)
    libs = [lib for lib in ThreadpoolController().select(user_api="blas").lib_controllers
            if not str(lib.filepath).startswith(torch_dir) and lib.num_threads > 1]
    before = max((lib.num_threads for lib in libs), default=None)
    for lib in libs:
        lib.set_num_threads(1)
    return before


def _parse_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[name]


def choose_device(device: str = "auto", dtype: str = "auto", threads: int | None = None,
                  encoder_dtype: str = "auto") -> DevicePolicy:
    """Decide the device and dtypes. ``device``, ``dtype`` and ``encoder_dtype`` come from the settings
    (``LLM_LAB_DEVICE``, ``LLM_LAB_DTYPE``, ``LLM_LAB_ENCODER_DTYPE`` or the command line); an explicit choice that
    cannot be honoured raises InvalidOptionsError."""
    from .errors import InvalidOptionsError

    if device.split(":")[0] not in DEVICES:
        raise InvalidOptionsError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    for name, value in (("dtype", dtype), ("encoder_dtype", encoder_dtype)):
        if value not in DTYPES and value not in ("fp32", "bf16", "fp16"):
            raise InvalidOptionsError(f"Unknown {name} {value!r}; choose one of {', '.join(DTYPES)}.")
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()

    if device == "auto":
        if torch.cuda.is_available():
            device, why = "cuda", f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device, why = "mps", "Apple GPU (MPS) found"
        else:
            device, why = "cpu", "no GPU found"
    else:
        why = "set by configuration"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidOptionsError("Device 'cuda' was requested but no CUDA GPU is visible; use --device auto or cpu.")
        if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InvalidOptionsError("Device 'mps' was requested but Apple MPS is not available; use --device auto or cpu.")

    if dtype == "auto":
        if device.startswith("cuda"):
            if torch.cuda.is_bf16_supported():
                chosen, dwhy = torch.bfloat16, "bf16 (the GPU supports it)"
            else:
                chosen, dwhy = torch.float16, "fp16 (the GPU has no bf16)"
        elif device == "mps":
            chosen, dwhy = torch.float16, "fp16 on MPS"
        else:
            amx = " (this CPU has AMX bf16 units: --dtype bfloat16 is faster, with slightly different results)" \
                if cpu_has_amx() else ""
            chosen, dwhy = torch.float32, "fp32 on the CPU, exact" + amx
    else:
        chosen, dwhy = _parse_dtype(dtype), "dtype set by configuration"
        if device == "cpu" and chosen == torch.float16:
            log.warning("float16 on the CPU is slow and imprecise; bfloat16 or float32 is better there")

    encoder, ewhy = chosen, "the same dtype"
    if encoder_dtype != "auto":
        encoder, ewhy = _parse_dtype(encoder_dtype), "encoder dtype set by configuration"
    elif dtype == "auto" and device == "cpu" and (units := cpu_bf16_units()):
        encoder, ewhy = torch.bfloat16, f"this CPU has bf16 units ({units}); measured 2x faster, labels kept"
    policy = DevicePolicy(device=device, dtype=chosen, reason=f"{why}; {dwhy}", threads=threads,
                          encoder_dtype=encoder, encoder_reason=ewhy)
    if device == "cpu" and (blas := limit_numpy_blas_threads()):
        log.info("numpy's BLAS: %d threads -> 1 (torch's workers own the cores)", blas)
    log.info("device policy: %s", policy.describe())
    return policy

