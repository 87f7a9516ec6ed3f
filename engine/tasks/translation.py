"""Translation: specialist encoder-decoders (Marian opus-mt pairs, NLLB-200, M2M100), pivoting through English, and
the instruct LLM as the generative alternative.

transformers 5 has no translation pipeline, so the served model calls the seq2seq model directly: tokenize a
length-sorted batch of sentences (prepare), ``model.generate`` under ``torch.inference_mode()`` (forward, the only
step on the device), decode (postprocess). Text is cut into sentences by :mod:`engine.text` and put back into its
paragraphs afterwards, so a long document becomes many short, batched translations.

:func:`translate` chooses the route (``model="auto"``): a Marian pair model when one is registered and available
(on disk, or the hub reachable), else a many-language model, else two Marian legs through English, else the
instruct LLM by prompt. Every choice it makes, and why, is said in :attr:`Translation.notes`.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Sequence

import torch

from ..cache import module_nbytes
from ..errors import (CancelledError, InvalidInputError, InvalidOptionsError, ModelLoadError,
                      ModelUnavailableError, UnknownModelError)
from ..loading import load_tokenizer, pretrained
from ..registry import ModelSpec
from ..text import base_language, detect_script_language, segment
from ..worker import Progress, Request
from .common import check_text, length_sorted_batches, read_text_file

if TYPE_CHECKING:
    from ..core import Engine

log = logging.getLogger(__name__)

TASK = "translation"
AUTO = "auto"  # model choice: pick the best available route
LLM = "llm"  # model choice: the instruct LLM translates by prompt
PIVOT = "en"  # the language two Marian legs meet in
BATCH = 16  # sentences per forward pass
MAX_BEAMS = 8
MAX_NEW_TOKENS = 1024  # the most a caller may ask for, per sentence
LLM_PARALLEL = 8  # sentences the LLM decodes together
UNAVAILABLE_TTL_S = 300.0  # how long "auto" remembers that a model could not be had (a dead network is slow to ask)

#: the languages offered in the UI (ISO 639-1 code -> English name); registered models may add others
LANGUAGES: dict[str, str] = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "zh": "Chinese", "ja": "Japanese",
    "it": "Italian", "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "uk": "Ukrainian", "pl": "Polish",
    "sv": "Swedish", "tr": "Turkish", "ar": "Arabic", "he": "Hebrew", "hi": "Hindi", "ko": "Korean", "el": "Greek",
    "th": "Thai", "vi": "Vietnamese", "id": "Indonesian", "cs": "Czech", "ro": "Romanian", "fi": "Finnish",
}
#: FLORES-200 codes, as NLLB names its language tokens
NLLB_CODES: dict[str, str] = {
    "en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "zh": "zho_Hans", "ja": "jpn_Jpan",
    "it": "ita_Latn", "pt": "por_Latn", "nl": "nld_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "pl": "pol_Latn",
    "sv": "swe_Latn", "tr": "tur_Latn", "ar": "arb_Arab", "he": "heb_Hebr", "hi": "hin_Deva", "ko": "kor_Hang",
    "el": "ell_Grek", "th": "tha_Thai", "vi": "vie_Latn", "id": "ind_Latn", "cs": "ces_Latn", "ro": "ron_Latn",
    "fi": "fin_Latn",
}
MANY_LANGUAGE_FAMILIES = ("nllb", "m2m100")


# --- results -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Leg:
    """One hop of a route: ``model`` translates ``source`` into ``target`` (``llm`` True: by prompt)."""

    model: str
    source: str
    target: str
    llm: bool = False

    def describe(self) -> str:
        how = f"the instruct LLM {self.model} (by prompt)" if self.llm else self.model
        return f"{self.source}→{self.target} via {how}"


@dataclasses.dataclass(frozen=True)
class Translation:
    """A translated text, and how it was made."""

    text: str
    source_lang: str  # as given, or as detected
    target_lang: str
    models: tuple[str, ...]  # every model that ran, in order
    route: tuple[str, ...]  # e.g. ("de→en via opus-mt-de-en", "en→fr via opus-mt-en-fr")
    notes: tuple[str, ...]  # what was chosen and why, warnings
    source_sentences: tuple[str, ...]
    sentences_out: tuple[str, ...]  # one translation per source sentence
    seconds: float
    llm: bool = False  # whether the generative LLM (rather than a specialist model) translated

    @property
    def model(self) -> str:
        return " + ".join(self.models)

    @property
    def sentences(self) -> int:
        return len(self.source_sentences)

    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.source_sentences, self.sentences_out))


@dataclasses.dataclass(frozen=True)
class Job:
    """What a served translator gets: sentences of one language pair, with the decoding options."""

    sentences: tuple[str, ...]
    source: str
    target: str
    num_beams: int | None = None
    max_new_tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class JobResult:
    texts: tuple[str, ...]
    truncated: int  # source sentences cut at the model's input limit


# --- the served specialist model ---------------------------------------------------------------------------------


class Seq2SeqTranslator:
    """A Marian, NLLB or M2M100 model and its tokenizer, translating batches of sentences."""

    def __init__(self, spec: ModelSpec, folder: Path, device: str, dtype: torch.dtype) -> None:
        self.spec, self.device = spec, device
        self.tokenizer = load_tokenizer(folder)
        self.model = pretrained("AutoModelForSeq2SeqLM", folder, dtype).to(device).eval()
        self.nbytes = module_nbytes(self.model)
        limit = getattr(self.tokenizer, "model_max_length", 0) or 0
        positions = getattr(self.model.config, "max_position_embeddings", 0) or 512
        self.max_input_tokens = min(limit, positions) if 0 < limit < 10**6 else positions
        self.default_beams = int(getattr(self.model.generation_config, "num_beams", 1) or 1)
        # Every call sets max_new_tokens; opus-mt's max_length=512 would only trigger a warning on each call.
        self.model.generation_config.max_length = None

    def batch_key(self, job: Job) -> Hashable:
        return job.source, job.target, job.num_beams, job.max_new_tokens

    def run_batch(self, requests: list[Request]) -> None:
        job = requests[0].payload  # the batch key makes the pair and options the same for all
        items = [(r, i, s) for r, request in enumerate(requests) for i, s in enumerate(request.payload.sentences)]
        outputs = [[""] * len(request.payload.sentences) for request in requests]
        done, truncated = [0] * len(requests), [0] * len(requests)
        failed: set[int] = set()
        for idx in length_sorted_batches(items, lambda item: len(item[2]), BATCH):
            for r, request in enumerate(requests):
                if request.cancelled and r not in failed:
                    failed.add(r)
                    request.fail(CancelledError("Translation cancelled."))
            idx = [i for i in idx if items[i][0] not in failed]
            if not idx:
                continue
            texts, cut = self.translate_batch([items[i][2] for i in idx], job)
            for i, text, was_cut in zip(idx, texts, cut):
                r, k, _ = items[i]
                outputs[r][k] = text
                done[r] += 1
                truncated[r] += was_cut
            for r in {items[i][0] for i in idx}:
                requests[r].report(done[r] / len(outputs[r]), f"{done[r]}/{len(outputs[r])} sentences")
        for r, request in enumerate(requests):
            if r not in failed:
                request.finish(JobResult(tuple(outputs[r]), truncated[r]))

    def translate_batch(self, sentences: list[str], job: Job) -> tuple[list[str], list[bool]]:
        """Translate one batch of sentences; also says which were cut at the input limit."""
        tok = self.tokenizer
        family = self.spec.family
        generate_kwargs: dict = {}
        if family == "nllb":
            tok.src_lang = NLLB_CODES.get(job.source, job.source)
            generate_kwargs["forced_bos_token_id"] = tok.convert_tokens_to_ids(NLLB_CODES.get(job.target, job.target))
        elif family == "m2m100":
            tok.src_lang = job.source
            generate_kwargs["forced_bos_token_id"] = tok.get_lang_id(job.target)
        limit = self.max_input_tokens
        ids = tok(sentences)["input_ids"]
        cut = [len(x) > limit for x in ids]
        ids = [x[:limit - 1] + x[-1:] if c else x for x, c in zip(ids, cut)]  # a cut sentence keeps its </s>
        batch = tok.pad({"input_ids": ids}, return_tensors="pt").to(self.device)  # (batch, source tokens), padded
        longest = max(len(x) for x in ids)
        # A hallucinating model can loop until max_length; real translations are rarely twice the source's length.
        max_new = job.max_new_tokens or min(2 * longest + 16, MAX_NEW_TOKENS)
        beams = job.num_beams or self.default_beams
        with torch.inference_mode():
            out = self.model.generate(**batch, num_beams=beams, max_new_tokens=max_new, **generate_kwargs)
        return [t.strip() for t in tok.batch_decode(out.cpu(), skip_special_tokens=True)], cut

    def check_pair(self, source: str, target: str) -> None:
        """Refuse a pair the loaded tokenizer has no language tokens for (many-language models)."""
        family = self.spec.family
        if family not in MANY_LANGUAGE_FAMILIES:
            return  # a pair model's languages are its registry entry's
        tok = self.tokenizer
        for lang in (source, target):
            if family == "nllb":
                code = NLLB_CODES.get(lang, lang)
                if tok.convert_tokens_to_ids(code) in (None, tok.unk_token_id):
                    raise InvalidOptionsError(f"{self.spec.name} has no language token {code!r} "
                                              f"({language_name(lang)}).")
            elif family == "m2m100" and lang not in getattr(tok, "lang_code_to_token", {lang: lang}):
                raise InvalidOptionsError(f"{self.spec.name} does not know the language {lang!r} "
                                          f"({language_name(lang)}).")


def load(spec: ModelSpec, files: Path, engine: "Engine") -> Seq2SeqTranslator:
    return Seq2SeqTranslator(spec, files, engine.policy.device, engine.policy.dtype)


# --- languages ---------------------------------------------------------------------------------------------------


def language_name(code: str) -> str:
    return LANGUAGES.get(code, code)


def known_languages(engine: "Engine") -> dict[str, str]:
    """The languages the UI offers: ours, plus any a registered translation model names."""
    langs = dict(LANGUAGES)
    for spec in engine.registry.for_task(TASK):
        for code in spec.languages:
            langs.setdefault(base_language(code), code)
    return langs


def _language(engine: "Engine", code: str, what: str) -> str:
    if not isinstance(code, str) or not code.strip():
        raise InvalidOptionsError(f"Pick a {what} language.")
    lang = base_language(code)
    if lang not in known_languages(engine):
        listing = ", ".join(f"{c} ({n})" for c, n in known_languages(engine).items())
        raise InvalidOptionsError(f"Unknown {what} language {code!r}. Known languages: {listing}.")
    return lang


def detect_language(text: str) -> tuple[str, str]:
    """(code, note) for ``text``'s language; refuses text it cannot tell."""
    guess = detect_script_language(text)
    if guess is None:
        raise InvalidInputError("Could not tell the source language (no known words or script): pick the source "
                                "language instead of 'auto'.")
    note = f"source language detected as {language_name(guess.code)} ({guess.confidence:.2f})"
    if guess.confidence < 0.5:
        note += "; unsure: set the source language if this is wrong"
    return guess.code, note


# --- routing -----------------------------------------------------------------------------------------------------


def supports(spec: ModelSpec, source: str, target: str) -> bool:
    """Whether ``spec`` translates ``source`` into ``target`` (by what the registry says; pair models are strict)."""
    langs = tuple(base_language(c) for c in spec.languages)
    if spec.family in MANY_LANGUAGE_FAMILIES:
        known = langs or (tuple(NLLB_CODES) if spec.family == "nllb" else tuple(LANGUAGES))
        return source in known and target in known
    return langs == (source, target)


def _pair_models(engine: "Engine", source: str, target: str) -> list[ModelSpec]:
    specs = [s for s in engine.registry.for_task(TASK) if s.family not in MANY_LANGUAGE_FAMILIES
             and supports(s, source, target)]
    return sorted(specs, key=lambda s: not s.default)


def _many_models(engine: "Engine", source: str, target: str) -> list[ModelSpec]:
    specs = [s for s in engine.registry.for_task(TASK) if s.family in MANY_LANGUAGE_FAMILIES
             and supports(s, source, target)]
    return sorted(specs, key=lambda s: not s.default)


_unavailable: "weakref.WeakKeyDictionary[Engine, dict[str, tuple[float, str]]]" = weakref.WeakKeyDictionary()
_unavailable_lock = threading.Lock()


def _available(engine: "Engine", spec: ModelSpec) -> str | None:
    """None when ``spec`` loads (it stays loaded for the translation), else why not, in a few words."""
    with _unavailable_lock:
        hit = _unavailable.get(engine, {}).get(spec.name)
    if hit is not None and time.monotonic() - hit[0] < UNAVAILABLE_TTL_S:
        return hit[1]
    try:
        engine.models.get(spec)
        return None
    except ModelUnavailableError:
        reason = "not on this machine" if engine.settings.offline else "not on this machine, and the hub unreachable"
    except ModelLoadError as e:
        log.warning("auto routing skips %s: %s", spec.name, e)
        reason = "its files could not be loaded"
    if not engine.settings.offline:  # offline, the check is a quick look at the disk: always look again
        with _unavailable_lock:
            _unavailable.setdefault(engine, {})[spec.name] = (time.monotonic(), reason)
    return reason


def _llm_name(engine: "Engine", model: str | None) -> str:
    if model and model != LLM:
        return model
    return engine.registry.default("text-generation").name


def _tried(skipped: list[tuple[str, str]]) -> str:
    """"a, b: not on this machine; c: its files could not be loaded": the models tried, grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped:
        by_reason.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())


def plan_route(engine: "Engine", source: str, target: str, model: str | None) -> tuple[tuple[Leg, ...], list[str]]:
    """The legs that translate ``source`` into ``target`` with ``model`` ("auto", "llm", or a model name), and notes
    on the choice. "auto" tries a pair model, a many-language model, two legs through English, then the LLM."""
    notes: list[str] = []
    if model == LLM:
        return (Leg(_llm_name(engine, None), source, target, llm=True),), notes
    if model and model != AUTO:
        try:
            spec = engine.registry.get(model)
        except UnknownModelError:
            names = [s.name for s in engine.registry.for_task(TASK)] + [LLM] + \
                    [s.name for s in engine.registry.for_task("text-generation") if s.chat]
            raise UnknownModelError(model, [AUTO] + names) from None
        if spec.task == "text-generation":
            return (Leg(spec.name, source, target, llm=True),), notes
        if spec.task != TASK:
            raise InvalidOptionsError(f"{spec.name} is a {spec.task} model, not a translation model.")
        if not supports(spec, source, target):
            able = [s.name for s in _pair_models(engine, source, target) + _many_models(engine, source, target)]
            raise InvalidOptionsError(
                f"{spec.name} does not translate {language_name(source)} into {language_name(target)}"
                + (f" (it translates {'→'.join(spec.languages)})" if spec.languages else "")
                + f". Pick 'auto'{', ' + ', '.join(able) if able else ''} or 'llm'.")
        return (Leg(spec.name, source, target),), notes

    skipped: list[tuple[str, str]] = []  # (model, why not)
    for spec in _pair_models(engine, source, target) + _many_models(engine, source, target):
        why = _available(engine, spec)
        if why is None:
            if skipped:
                notes.append(f"used {spec.name}; skipped {_tried(skipped)}")
            return (Leg(spec.name, source, target),), notes
        skipped.append((spec.name, why))
    if PIVOT not in (source, target):
        first, second = _pair_models(engine, source, PIVOT), _pair_models(engine, PIVOT, target)
        if first and second:
            legs = []
            for candidates in (first, second):
                for spec in candidates:
                    why = _available(engine, spec)
                    if why is None:
                        legs.append(Leg(spec.name, spec.languages[0], spec.languages[1]))
                        break
                    skipped.append((spec.name, why))
                else:
                    break
            if len(legs) == 2:
                legs = [dataclasses.replace(legs[0], source=source, target=PIVOT),
                        dataclasses.replace(legs[1], source=PIVOT, target=target)]
                notes.append(f"pivoted through English: no direct {language_name(source)}→{language_name(target)} "
                             "model is available, so two specialist models translate in turn (errors can compound)")
                if skipped:
                    notes.append(f"skipped {_tried(skipped)}")
                return tuple(legs), notes
    llm = _llm_name(engine, None)
    pair = f"{language_name(source)}→{language_name(target)}"
    if not skipped:
        notes.append(f"no specialist model is registered for {pair}; the instruct LLM {llm} translated by prompt")
    else:
        where = "available offline" if engine.settings.offline else "available"
        notes.append(f"specialist model not {where} for {pair} (tried {_tried(skipped)}); the instruct LLM {llm} "
                     "translated by prompt")
    return (Leg(llm, source, target, llm=True),), notes


# --- running the legs ----------------------------------------------------------------------------------------------


def _check_options(num_beams: int | None, max_new_tokens: int | None) -> None:
    if num_beams is not None and not (isinstance(num_beams, int) and 1 <= num_beams <= MAX_BEAMS):
        raise InvalidOptionsError(f"num_beams must be a whole number from 1 to {MAX_BEAMS}, got {num_beams!r}.")
    if max_new_tokens is not None and not (isinstance(max_new_tokens, int) and 1 <= max_new_tokens <= MAX_NEW_TOKENS):
        raise InvalidOptionsError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, "
                                  f"got {max_new_tokens!r}.")


def _run_specialist(engine: "Engine", leg: Leg, sentences: tuple[str, ...], num_beams: int | None,
                    max_new_tokens: int | None, progress: Progress | None) -> tuple[tuple[str, ...], list[str]]:
    served = engine.served(TASK, leg.model)
    served.check_pair(leg.source, leg.target)
    job = Job(sentences, leg.source, leg.target, num_beams, max_new_tokens)
    result: JobResult = engine.run(TASK, leg.model, job, progress)
    notes = []
    if result.truncated:
        notes.append(f"{result.truncated} sentence(s) were longer than {leg.model}'s input limit of "
                     f"{served.max_input_tokens} tokens and were cut: add punctuation or line breaks")
    return result.texts, notes


def llm_prompt(sentence: str, source: str, target: str) -> str:
    """The instruction the LLM gets for one sentence."""
    return (f"Translate the following {language_name(source)} text into {language_name(target)}. "
            f"Reply with the translation only.\n\n{sentence}")


# None: the model's own default. On SmolLM2-135M a "you are a translator" system prompt made it explain its answers.
LLM_SYSTEM_PROMPT: str | None = None
_PREAMBLE = re.compile(r"^\s*(?:here(?: is|'s) (?:the|my|a) translation[^:\n]*|translation|"
                       r"[A-Z][a-z]+ translation)\s*:\s*", re.IGNORECASE)


def clean_llm_output(text: str) -> str:
    """The translation in an LLM's answer: its first non-empty line, without a "Translation:" preamble or quotes."""
    text = _PREAMBLE.sub("", text.strip())
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _PREAMBLE.sub("", line)
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'“”«»":
        line = line[1:-1].strip()
    if len(line) >= 2 and line[0] in "“«" and line[-1] in "”»":
        line = line[1:-1].strip()
    return line


def _run_llm(engine: "Engine", leg: Leg, sentences: tuple[str, ...], max_new_tokens: int | None,
             progress: Progress | None) -> tuple[tuple[str, ...], list[str]]:
    """One greedy prompt per sentence. They are submitted together (a few at a time), so the generation engine's
    continuous batching decodes them in one batch."""

    def one(sentence: str) -> str:
        # About a token per 3 characters, with room for languages that need more tokens than English.
        budget = max_new_tokens or min(max(32, len(sentence) // 2 + 24), 512)
        # No repetition penalty: names and numbers must be copied from the prompt, not avoided.
        answer = engine.generate(llm_prompt(sentence, leg.source, leg.target), model=leg.model, max_new_tokens=budget,
                                 temperature=0, repetition_penalty=1.0, system_prompt=LLM_SYSTEM_PROMPT)
        return clean_llm_output(answer.text)

    out: list[str] = [""] * len(sentences)
    workers = max(1, min(len(sentences), engine.settings.max_batch, LLM_PARALLEL))
    with ThreadPoolExecutor(workers, thread_name_prefix="translate-llm") as pool:
        futures = {pool.submit(one, sentence): i for i, sentence in enumerate(sentences)}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                out[futures[future]] = future.result()
                if progress is not None:
                    progress(done / len(sentences), f"{done}/{len(sentences)} sentences (LLM)")
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    empty = sum(1 for text in out if not text)
    notes = [f"the LLM gave no translation for {empty} of {len(out)} sentence(s)"] if empty else []
    return tuple(out), notes


def _scaled(progress: Progress | None, step: int, steps: int) -> Progress | None:
    if progress is None:
        return None
    return lambda fraction, message: progress((step + fraction) / steps, message)


def translate(engine: "Engine", text: str, source_lang: str = AUTO, target_lang: str = "de",
              model: str | None = AUTO, *, num_beams: int | None = None, max_new_tokens: int | None = None,
              progress: Progress | None = None) -> Translation:
    """Translate ``text`` (any length: it is cut into sentences, translated in batches and put back into its
    paragraphs).

    ``source_lang`` is a language code or "auto" (detected from the script and common words); ``model`` is "auto"
    (the best available route, see :func:`plan_route`), "llm" (the instruct LLM by prompt), or a model name: a
    translation model, or a chat model of the text-generation task. ``num_beams`` (1 to 8) and ``max_new_tokens`` (per
    sentence) override the model's defaults. ``engine.translate("Guten Morgen!", "auto", "en").text``.
    """
    t0 = time.perf_counter()
    text = check_text(text, "text to translate", engine.settings.max_chars)
    _check_options(num_beams, max_new_tokens)
    target = _language(engine, target_lang, "target")
    notes: list[str] = []
    if not source_lang or source_lang == AUTO:
        source, note = detect_language(text)
        notes.append(note)
    else:
        source = _language(engine, source_lang, "source")
    if source == target:
        raise InvalidOptionsError(f"The source and the target are both {language_name(target)}"
                                  + (" (detected): set the source language if the detection is wrong, or "
                                     if notes else ": ") + "pick another target language.")
    legs, route_notes = plan_route(engine, source, target, model or AUTO)
    notes.extend(route_notes)
    document = segment(text)
    sentences = document.sentences
    current = sentences
    for step, leg in enumerate(legs):
        leg_progress = _scaled(progress, step, len(legs))
        if leg.llm:
            current, leg_notes = _run_llm(engine, leg, current, max_new_tokens, leg_progress)
        else:
            current, leg_notes = _run_specialist(engine, leg, current, num_beams, max_new_tokens, leg_progress)
        notes.extend(leg_notes)
    if any(leg.llm for leg in legs) and num_beams not in (None, 1):
        notes.append("beam search applies to the specialist models only; the LLM decodes greedily")
    translated = document.rebuild(current, target_lang=target)
    log.info("translated %d sentences %s→%s via %s in %.2f s", len(sentences), source, target,
             " + ".join(leg.model for leg in legs), time.perf_counter() - t0)
    return Translation(translated, source, target, tuple(dict.fromkeys(leg.model for leg in legs)),
                       tuple(leg.describe() for leg in legs), tuple(notes), tuple(sentences), tuple(current),
                       time.perf_counter() - t0, llm=any(leg.llm for leg in legs))


def translate_lines(engine: "Engine", lines: Sequence[str], source_lang: str = AUTO, target_lang: str = "de",
                    model: str | None = AUTO, *, num_beams: int | None = None, max_new_tokens: int | None = None,
                    progress: Progress | None = None) -> tuple[list[str], Translation]:
    """Translate segments that must stay aligned (e.g. the sources of a test set): one output line per input line."""
    flat = [" ".join(line.split()) for line in lines]  # a line break inside a segment would shift the rest
    filled = [i for i, line in enumerate(flat) if line]
    if not filled:
        raise InvalidInputError("There are no sources to translate: every line is empty.")
    result = translate(engine, "\n".join(flat[i] for i in filled), source_lang, target_lang, model,
                       num_beams=num_beams, max_new_tokens=max_new_tokens, progress=progress)
    translated = result.text.split("\n")  # the rebuilt document keeps one line per input line
    if len(translated) != len(filled):
        raise RuntimeError(f"{len(filled)} lines came back as {len(translated)}")
    out = [""] * len(flat)
    for i, line in zip(filled, translated):
        out[i] = line
    return out, result


__all__ = ["Translation", "Leg", "Job", "LANGUAGES", "NLLB_CODES", "AUTO", "LLM", "translate", "translate_lines",
           "plan_route", "supports", "detect_language", "language_name", "known_languages", "llm_prompt",
           "clean_llm_output", "read_text_file", "load"]
