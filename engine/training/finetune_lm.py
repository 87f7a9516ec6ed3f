"""LoRA fine-tuning of a causal language model on a text: the packaged SmolLM2, or a model made in the Pretrain tab.

``engine.finetune_lm(text, steps=100)`` splits the text's tokens into a training part (the first 90%) and a
validation part (the rest), trains low-rank adapters (``peft``) on the attention projections with random windows of
``block_size`` tokens from the training part (as nanoGPT's ``get_batch``), and measures the validation perplexity
(exp of the mean next-token loss over fixed windows) before and after. It generates from the same prompt, greedily,
before and after, so the change shows as text. The adapters are merged into the weights and the result saved as a
``causal-lm`` model of the text-generation task: the Text generation tab and ``engine.generate(model=NAME)`` serve it.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from ..errors import InvalidInputError, InvalidOptionsError
from ..loading import load_tokenizer, pretrained
from .finetune import _autocast, check_learning_rate, check_whole_numbers, lr_at
from .store import Card, check_model_name, now_iso

if TYPE_CHECKING:
    from ..core import Engine
    from ..registry import ModelSpec
    from .runner import TrainingRun

log = logging.getLogger(__name__)

TASK = "text-generation"
VAL_FRACTION = 0.1
EVAL_WINDOWS = 16  # validation windows the perplexity is measured on (the same ones before and after)
SAMPLE_TOKENS = 40
MAX_STEPS = 5000


@dataclasses.dataclass(frozen=True)
class LMOptions:
    base: str
    lora_r: int
    steps: int
    learning_rate: float
    block_size: int
    batch_size: int
    seed: int
    name: str
    prompt: str


@dataclasses.dataclass(frozen=True)
class LMEvent:
    """One step of progress. ``kind``: "start" (``val_perplexity`` before, ``sample_before``), "step" (``loss``) or
    "done" (both perplexities and samples, ``model``; ``done`` True)."""

    kind: str
    step: int
    steps: int
    elapsed: float
    message: str
    loss: float | None = None
    perplexity_before: float | None = None
    perplexity_after: float | None = None
    prompt: str = ""
    sample_before: str = ""
    sample_after: str = ""
    tokens_per_s: float | None = None
    model: str | None = None
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def finetune_lm(engine: "Engine", text: str, *, base: str | None = None, lora_r: int = 8, steps: int = 100,
                learning_rate: float = 1e-3, block_size: int = 64, batch_size: int = 2, seed: int = 0,
                name: str | None = None, prompt: str | None = None) -> "TrainingRun":
    """LoRA-fine-tune ``base`` (default: the packaged instruct LLM; or any text-generation model, such as one from the
    Pretrain tab) on ``text``; returns the run, an iterator of :class:`LMEvent` whose last one has the validation
    perplexity before and after, a sample from ``prompt`` (default: the text's first words) before and after, and
    the registered model's name::

        run = engine.finetune_lm(open("poems.txt").read(), steps=100, name="smol-poems")
        last = list(run)[-1]
        print(last.perplexity_before, last.perplexity_after, last.sample_after)
        engine.generate("The sea", model="smol-poems")
    """
    spec = engine.spec(TASK, base) if base else engine.registry.default(TASK)
    if spec.family != "causal-lm":
        raise InvalidOptionsError(f"{spec.name} is not a causal language model.")
    check_whole_numbers(("lora_r", lora_r, 1, 256), ("steps", steps, 1, MAX_STEPS),
                        ("block_size", block_size, 8, 1024), ("batch_size", batch_size, 1, 64))
    check_learning_rate(learning_rate)
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("The text to fine-tune on is empty: paste or upload some text.")
    if "\x00" in text:
        raise InvalidInputError("The text holds binary data (NUL bytes); give plain text.")
    if len(text.encode("utf-8")) > engine.settings.max_upload_bytes:
        raise InvalidInputError(f"The text is larger than {engine.settings.max_upload_bytes / 2**20:.0f} MB.")
    name = check_model_name(name or f"{spec.name.split('-')[0].lower()}-lora", engine.registry, engine.trained,
                            TASK)
    from ..sources import resolve_files

    folder = Path(resolve_files(spec, engine.settings))
    tokenizer = load_tokenizer(folder)
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # windows: no length limit
    n_val = max(block_size + 1, int(len(ids) * VAL_FRACTION))
    if len(ids) - n_val < block_size + 1:
        raise InvalidInputError(f"The text is {len(ids)} tokens long; with block_size {block_size} it needs at least "
                                f"{2 * (block_size + 1)} (a training and a validation part). Give more text or a "
                                "smaller block_size.")
    prompt = (prompt or " ".join(text.split()[:6])).strip()
    opts = LMOptions(spec.name, int(lora_r), int(steps), float(learning_rate), int(block_size), int(batch_size),
                     int(seed), name, prompt)
    data = {"chars": len(text), "tokens": len(ids), "train_tokens": len(ids) - n_val, "val_tokens": n_val,
            "sha256": __import__("hashlib").sha256(text.encode("utf-8")).hexdigest()}
    job = _job(engine, opts, spec, folder, tokenizer, torch.tensor(ids[:-n_val]), torch.tensor(ids[-n_val:]), data)
    return engine.start_training(f"LoRA fine-tuning {name!r} on {spec.name}", job)


def perplexity(model: Any, val: torch.Tensor, block_size: int, device: str, autocast: Callable) -> float:
    """exp(mean next-token loss) over up to :data:`EVAL_WINDOWS` evenly spaced validation windows."""
    starts = np.linspace(0, len(val) - block_size - 1, num=min(EVAL_WINDOWS, len(val) - block_size), dtype=int)
    x = torch.stack([val[s:s + block_size] for s in starts]).to(device)
    y = torch.stack([val[s + 1:s + block_size + 1] for s in starts]).to(device)
    model.eval()
    with torch.inference_mode(), autocast():
        logits = model(input_ids=x).logits  # (windows, block, vocab)
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    return float(torch.exp(loss))


def sample(model: Any, tokenizer: Any, prompt: str, device: str) -> str:
    """A greedy continuation of ``prompt`` (the same before and after training, so the difference is the model's)."""
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    model.eval()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=SAMPLE_TOKENS, do_sample=False, repetition_penalty=1.1,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def _job(engine: "Engine", opts: LMOptions, spec: "ModelSpec", folder: Path, tokenizer: Any, train: torch.Tensor,
         val: torch.Tensor, data: dict) -> Callable[[Callable[[], bool]], Iterator[LMEvent]]:
    def job(should_stop: Callable[[], bool]) -> Iterator[LMEvent]:
        from peft import LoraConfig, TaskType, get_peft_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

        t0 = time.perf_counter()
        device = engine.policy.device
        autocast = lambda: _autocast(engine)  # noqa: E731
        torch.manual_seed(opts.seed)
        model = pretrained("AutoModelForCausalLM", folder).to(device)
        model.config.use_cache = False
        before = perplexity(model, val, opts.block_size, device, autocast)
        sample_before = sample(model, tokenizer, opts.prompt, device)
        yield LMEvent("start", 0, opts.steps, time.perf_counter() - t0,
                      f"validation perplexity before: {before:.2f}", perplexity_before=before, prompt=opts.prompt,
                      sample_before=sample_before)
        targets = TARGETS.get(model.config.model_type, "all-linear")
        lora = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=opts.lora_r,
                                                lora_alpha=2 * opts.lora_r, lora_dropout=0.0,
                                                target_modules=targets))
        params = [p for p in lora.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=opts.learning_rate, weight_decay=0.0)
        generator = torch.Generator().manual_seed(opts.seed)
        step, train_start = 0, time.perf_counter()
        lora.train()
        while step < opts.steps and not should_stop():
            starts = torch.randint(0, len(train) - opts.block_size - 1, (opts.batch_size,), generator=generator)
            x = torch.stack([train[s:s + opts.block_size] for s in starts]).to(device)  # (batch, block)
            y = torch.stack([train[s + 1:s + opts.block_size + 1] for s in starts]).to(device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, opts.steps, opts.learning_rate)
            with autocast():
                logits = lora(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            rate = step * opts.batch_size * opts.block_size / (time.perf_counter() - train_start)
            yield LMEvent("step", step, opts.steps, time.perf_counter() - t0,
                          f"step {step}/{opts.steps}: loss {loss.item():.4f}", loss=float(loss.item()),
                          tokens_per_s=rate)
        if step == 0:
            yield LMEvent("done", 0, opts.steps, time.perf_counter() - t0, "Stopped before the first step; nothing "
                          "was saved.", perplexity_before=before, prompt=opts.prompt, sample_before=sample_before,
                          done=True)
            return
        merged = lora.merge_and_unload()
        after = perplexity(merged, val, opts.block_size, device, autocast)
        sample_after = sample(merged, tokenizer, opts.prompt, device)
        seconds = time.perf_counter() - t0
        saved = _save(engine, merged, tokenizer, opts, spec, data, before, after, step, seconds)
        stopped = " (stopped early)" if step < opts.steps else ""
        yield LMEvent("done", step, opts.steps, seconds,
                      f"validation perplexity {before:.2f} → {after:.2f} after {step} steps{stopped}; saved as "
                      f"{saved!r}", perplexity_before=before, perplexity_after=after, prompt=opts.prompt,
                      sample_before=sample_before, sample_after=sample_after, model=saved, done=True,
                      tokens_per_s=step * opts.batch_size * opts.block_size / (time.perf_counter() - train_start))

    return job


def _save(engine: "Engine", model: Any, tokenizer: Any, opts: LMOptions, spec: "ModelSpec", data: dict,
          before: float, after: float, steps: int, seconds: float) -> str:
    model.config.use_cache = True
    return engine.trained.save_pretrained(opts.name, model, tokenizer, lambda size: Card(
        opts.name, TASK, "causal-lm", "LoRA fine-tuned language model",
        f"{spec.name} with LoRA adapters (r={opts.lora_r}, merged) trained {steps} steps on {data['tokens']:,} tokens "
        f"of text; validation perplexity {before:.2f} → {after:.2f}",
        base=spec.name, settings=dataclasses.asdict(opts),
        metrics={"perplexity_before": before, "perplexity_after": after, "steps": steps,
                 "seconds": round(seconds, 1)},
        data=data, chat=spec.chat and bool(getattr(tokenizer, "chat_template", None)), size=size, created=now_iso()))
