"""The code behind every result: from a result and the options that made it, two Python scripts that reproduce it,
one with this engine's API and one with the plain libraries (transformers, openai-whisper, sacrebleu).

Each script names the exact model (a hub id and revision, or the path the packaged weights were converted to), every
option, the seed, the device and the dtype, and prints the headline of the result in the same form whichever script
printed it. What the plain script cannot reproduce exactly (a sample drawn by this engine's own generator, a long
input the engine cut into windows) is said in a comment at its top and in ``notes``.

    >>> r = engine.generate("The capital of France is", max_new_tokens=8, temperature=0)
    >>> print(codegen.generation_code(engine, "The capital of France is", r).plain)
"""
from __future__ import annotations

import dataclasses
import logging
import textwrap
from typing import TYPE_CHECKING, Sequence

from .registry import BUILTIN_MODELS, ModelSpec
from .sources import resolve_files

if TYPE_CHECKING:
    from .core import Engine
    from .scoring import ScoreReport
    from .tasks.generation import GenerationResult
    from .tasks.qa import Answer
    from .tasks.sentiment import Classification, Explanation
    from .tasks.speech import Transcript
    from .tasks.translation import Translation

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Snippets:
    """Two scripts that reproduce one result: ``engine`` (this app's API) and ``plain`` (the libraries alone)."""

    engine: str
    plain: str
    notes: tuple[str, ...] = ()


def _code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


# --- what every script needs: the model, the device and dtype ---------------------------------------------------------
def _engine_setup(engine: "Engine", specs: Sequence[ModelSpec], **more: str) -> str:
    """Imports, the models the built-in registry does not know (or knows differently), and the engine (with ``more``
    settings, written as given)."""
    builtin = {s.name: dataclasses.replace(s, default=False) for s in BUILTIN_MODELS}
    extra = [s for s in specs if builtin.get(s.name) != dataclasses.replace(s, default=False)]
    lines = [f"from engine import Engine, {'ModelSpec, Registry, ' if extra else ''}Settings", ""]
    settings = f"Settings(device={engine.policy.device!r}, dtype={engine.policy.dtype_name!r}" + (
        f", encoder_dtype={engine.policy.encoder_dtype_name!r}" if engine.policy.encoder_dtype != engine.policy.dtype
        else "") + "".join(f", {k}={v!r}" for k, v in more.items()) + ")"
    if extra:
        lines.append("registry = Registry()")
        for spec in extra:
            fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(ModelSpec)
                      if f.name in ("name", "task", "family", "source", "revision", "chat", "languages", "labels",
                                    "fallback") and getattr(spec, f.name) not in (None, (), False)}
            lines.append(f"registry.add(ModelSpec({', '.join(f'{k}={v!r}' for k, v in fields.items())}))")
        lines.append(f"engine = Engine({settings}, registry)")
    else:
        lines.append(f"engine = Engine({settings})")
    return "\n".join(lines)


def _weights(engine: "Engine", spec: ModelSpec) -> tuple[str, str | None, str]:
    """(where the weights are, as a string for from_pretrained; the revision or None; a comment saying what it is)."""
    kind, _, where = spec.source.partition(":")
    if kind == "hub":
        return where, spec.revision, f"{spec.name}: the hub repository {where} at revision {spec.revision or 'main'}"
    path = str(resolve_files(spec, engine.settings))  # the model is loaded, so this finds what it loaded from
    if kind == "packaged":
        from .packaged import PACKAGED

        item = PACKAGED[where]
        return path, None, (f"{spec.name}: the PyPI package {' '.join(item.requirements)}, converted for "
                            f"transformers by `python -m engine.packaged` into this folder")
    return path, None, f"{spec.name}: the files in {path}"


def _device_lines(engine: "Engine", encoder: bool = False) -> str:
    """The device and dtype the engine ran the model with (``encoder``: a sentiment classifier or sentence encoder,
    whose dtype may differ: engine.device)."""
    dtype = engine.policy.encoder_dtype_name if encoder else engine.policy.dtype_name
    return f"DEVICE, DTYPE = {engine.policy.device!r}, torch.{dtype}"


def _revision(revision: str | None) -> str:
    return f", revision={revision!r}" if revision else ""


# --- text generation --------------------------------------------------------------------------------------------------
def generation_code(engine: "Engine", prompt: str, result: "GenerationResult",
                    system_prompt: str | None = None) -> Snippets:
    """Scripts that generate ``result`` again from ``prompt`` (greedy results exactly; sampled ones see notes)."""
    spec = engine.registry.get(result.model)
    o = result.options
    seed = result.seed if not o.greedy else None
    engine_code = _code(f"""
        @SETUP@

        result = engine.generate(
            {prompt!r},
            {spec.name!r},
            max_new_tokens={o.max_new_tokens}, temperature={o.temperature}, top_k={o.top_k}, top_p={o.top_p},
            repetition_penalty={o.repetition_penalty}, stop={tuple(o.stop)!r}, seed={seed!r},
            chat={result.chat}, system_prompt={system_prompt or None!r},
        )
        print(result.text)
    """).replace("@SETUP@", _engine_setup(engine, [spec]))
    served = engine.served("text-generation", spec.name)
    model, revision, what = _weights(engine, spec)
    notes = []
    if o.greedy:
        decode = f"do_sample=False, repetition_penalty={o.repetition_penalty}"
        seeding = ""
    else:
        decode = (f"do_sample=True, temperature={o.temperature}, top_k={o.top_k}, top_p={o.top_p}, "
                  f"repetition_penalty={o.repetition_penalty}")
        seeding = f"torch.manual_seed({seed})\n"
        notes.append("Sampling: transformers draws with its own random stream, so the plain script gives a sample "
                     "from the same distribution, not the same text; the engine script (same seed) gives the same "
                     "text. At temperature 0 both give the same text.")
    if result.notes:
        notes.extend(result.notes)
    if result.chat:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
                   [{"role": "user", "content": prompt}]
        encode = (f"messages = {messages!r}\n"
                  "text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)\n"
                  "ids = tokenizer.encode(text, add_special_tokens=False)")
    else:
        encode = f"ids = tokenizer.encode({prompt!r})"
    stops = ""
    if o.stop:
        stops = (f"for stop in {tuple(o.stop)!r}:  # the text ends before the first stop sequence\n"
                 "    text = text.split(stop)[0]\n")
    header = "".join(f"# Note: {n}\n" for n in notes)
    plain = _code(f"""
        # {what}
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        MODEL = {model!r}
        {_device_lines(engine)}
        tokenizer = AutoTokenizer.from_pretrained(MODEL{_revision(revision)})
        model = AutoModelForCausalLM.from_pretrained(MODEL{_revision(revision)}, dtype=DTYPE).to(DEVICE).eval()
        @ENCODE@
        input_ids = torch.tensor([ids], device=DEVICE)
        @SEED@with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                 max_new_tokens={o.max_new_tokens}, {decode},
                                 eos_token_id={sorted(served.eos_ids)!r}, pad_token_id={served.pad_id})
        text = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
        @STOPS@print(text)
    """).replace("@ENCODE@", encode).replace("@SEED@", seeding).replace("@STOPS@", stops)
    return Snippets(engine_code, header + plain, tuple(notes))


# --- classification ---------------------------------------------------------------------------------------------------
def classification_code(engine: "Engine", result: "Classification | Explanation") -> Snippets:
    """Scripts that classify ``result.text`` again and print every label's probability."""
    spec = engine.registry.get(result.model) if result.model in engine.registry.names() else None
    if getattr(result, "generative", False) or spec is None or spec.task != "sentiment":
        return _generative_only(engine, f"engine.classify({result.text!r}, 'llm')",
                                "for label, p in result.distribution.items():\n    print(f\"{label}\\t{p:.6f}\")",
                                "The instruct LLM classified this text (zero-shot, from its probabilities of the "
                                "label words), a procedure of this engine: only the engine script reproduces it.")
    served = engine.served("sentiment", spec.name)
    model, revision, what = _weights(engine, spec)
    engine_code = _code(f"""
        @SETUP@

        result = engine.classify({result.text!r}, {spec.name!r})
        for label, p in result.distribution.items():
            print(f"{{label}}\\t{{p:.6f}}")
    """).replace("@SETUP@", _engine_setup(engine, [spec]))
    plain = _code(f"""
        # {what}
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        MODEL = {model!r}
        {_device_lines(engine, encoder=True)}
        tokenizer = AutoTokenizer.from_pretrained(MODEL{_revision(revision)})
        model = AutoModelForSequenceClassification.from_pretrained(MODEL{_revision(revision)}, dtype=DTYPE)
        model = model.to(DEVICE).eval()
        LABELS = {list(served.labels)!r}  # model.config.id2label, or the registry's names where those are generic
        enc = tokenizer([{result.text!r}], padding=True, truncation=True, max_length={served.max_length},
                        return_tensors="pt").to(DEVICE)
        with torch.inference_mode():
            probs = torch.softmax(model(**enc).logits.float(), dim=-1)[0]
        for label, p in zip(LABELS, probs.tolist()):
            print(f"{{label}}\\t{{p:.6f}}")
    """)
    return Snippets(engine_code, plain, result.notes)


def _generative_only(engine: "Engine", call: str, show: str, why: str) -> Snippets:
    setup = _engine_setup(engine, [])
    code = f"{setup}\n\nresult = {call}\n{show}\n"
    return Snippets(code, f"# {why}\n" + code, (why,))


# --- translation scores -----------------------------------------------------------------------------------------------
def scoring_code(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], target_lang: str,
                 report: "ScoreReport") -> Snippets:
    """Scripts that score ``hypotheses`` against ``references`` again: corpus BLEU, chrF++ and TER."""
    from .scoring import _CHINESE, CHRF_WORD_ORDER, _reference_sets
    from .text import base_language

    hyps = list(hypotheses)
    ref_sets = [list(r) for r in _reference_sets(references)]
    asian = base_language(target_lang) in _CHINESE | {"ja"}
    show = ('print(f"BLEU {bleu:.4f}")\nprint(f"chrF++ {chrf:.4f}")\nprint(f"TER {ter:.4f}")')
    engine_code = _code(f"""
        from engine import scoring

        report = scoring.score({hyps!r}, {ref_sets!r}, {target_lang!r})
        bleu, chrf, ter = report.bleu.score, report.chrf.score, report.ter.score
        @SHOW@
    """).replace("@SHOW@", show)
    plain = _code(f"""
        # sacrebleu, as the Translation tab scores:
        # {report.bleu.signature} | {report.chrf.signature} | {report.ter.signature}
        from sacrebleu.metrics import BLEU, CHRF, TER

        hypotheses = {hyps!r}
        references = {ref_sets!r}  # one list per reference set, each with one reference per hypothesis
        bleu = BLEU(tokenize={report.tokenizer!r}).corpus_score(hypotheses, references).score
        chrf = CHRF(word_order={CHRF_WORD_ORDER}).corpus_score(hypotheses, references).score
        ter = TER(normalized={asian}, asian_support={asian}).corpus_score(hypotheses, references).score
        @SHOW@
    """).replace("@SHOW@", show)
    return Snippets(engine_code, plain)


# --- translation, question answering, speech: the engine call, and the plain library's nearest equivalent -------------
def translation_code(engine: "Engine", text: str, result: "Translation", model: str | None = "auto",
                     num_beams: int | None = None) -> Snippets:
    """Scripts that translate ``text`` again (the plain one runs the route's first specialist on the whole text)."""
    call = (f"engine.translate({text!r}, source_lang={result.source_lang!r}, target_lang={result.target_lang!r}, "
            f"model={model!r}, num_beams={num_beams!r})")
    specs = [engine.registry.get(m) for m in result.models if m in engine.registry.names()]
    engine_code = f"{_engine_setup(engine, specs)}\n\nresult = {call}\nprint(result.text)\n"
    if result.llm or not specs:
        why = "The instruct LLM translated by prompt, a procedure of this engine: only the engine script reproduces it."
        return Snippets(engine_code, f"# {why}\n" + engine_code, (why,))
    spec = specs[0]
    model_path, revision, what = _weights(engine, spec)
    notes = ["The engine cuts the text into sentences and translates them in batches; the plain script translates "
             "each sentence the same way, one at a time."]
    if len(specs) > 1:
        notes.append(f"The engine pivoted through {' then '.join(s.name for s in specs)}; the plain script shows "
                     "the first step only.")
    plain = _code(f"""
        # {what}
        # Note: {' '.join(notes)}
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        MODEL = {model_path!r}
        {_device_lines(engine)}
        tokenizer = AutoTokenizer.from_pretrained(MODEL{_revision(revision)})
        model = AutoModelForSeq2SeqLM.from_pretrained(MODEL{_revision(revision)}, dtype=DTYPE).to(DEVICE).eval()
        sentences = {list(result.source_sentences)!r}
        out = []
        for sentence in sentences:
            enc = tokenizer([sentence], return_tensors="pt").to(DEVICE)
            with torch.inference_mode():
                ids = model.generate(**enc, num_beams={num_beams or 4}, max_new_tokens=512)
            out.append(tokenizer.decode(ids[0], skip_special_tokens=True))
        print(" ".join(out))
    """)
    return Snippets(engine_code, plain, tuple(notes))


def answer_code(engine: "Engine", question: str, context: str, result: "Answer", top_k: int = 3) -> Snippets:
    """Scripts that answer ``question`` from ``context`` again."""
    spec_name = None if result.generative else result.model
    call = f"engine.answer({question!r}, {context!r}, {spec_name or 'llm'!r}, top_k={top_k})"
    specs = [engine.registry.get(spec_name)] if spec_name else []
    engine_code = f"{_engine_setup(engine, specs)}\n\nresult = {call}\nprint(result.text, result.score)\n"
    if not specs:
        why = "The instruct LLM answered by prompt, a procedure of this engine: only the engine script reproduces it."
        return Snippets(engine_code, f"# {why}\n" + engine_code, (why,))
    model_path, revision, what = _weights(engine, specs[0])
    note = ("The engine reads long contexts in overlapping windows and limits answers to 30 tokens; the plain script "
            "reads one window and takes the best start and end with start <= end.")
    plain = _code(f"""
        # {what}
        # Note: {note}
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        MODEL = {model_path!r}
        {_device_lines(engine)}
        tokenizer = AutoTokenizer.from_pretrained(MODEL{_revision(revision)})
        model = AutoModelForQuestionAnswering.from_pretrained(MODEL{_revision(revision)}, dtype=DTYPE).to(DEVICE).eval()
        question, context = {question!r}, {context!r}
        enc = tokenizer(question, context, truncation="only_second", max_length=384, return_offsets_mapping=True,
                        return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0]
        in_context = torch.tensor([s == 1 for s in enc.sequence_ids(0)])
        with torch.inference_mode():
            out = model(**enc.to(DEVICE))
        start = out.start_logits[0].float().cpu().softmax(-1) * in_context
        end = out.end_logits[0].float().cpu().softmax(-1) * in_context
        scores = torch.triu(start[:, None] * end[None, :])  # start <= end
        s, e = divmod(int(scores.argmax()), scores.shape[1])
        print(context[int(offsets[s][0]):int(offsets[e][1])], float(scores[s, e]))
    """)
    return Snippets(engine_code, plain, (note,))


def transcription_code(engine: "Engine", audio_path: str, result: "Transcript",
                       language: str | None = None) -> Snippets:
    """Scripts that transcribe ``audio_path`` again (the plain one with openai-whisper's own ``transcribe``)."""
    from .tasks.speech import decoder_weights

    spec = engine.registry.get(result.model)
    call = (f"engine.transcribe({audio_path!r}, {spec.name!r}, language={language or 'auto'!r}, "
            f"task={result.task!r})")
    weights, _ = decoder_weights(engine)
    more = {"speech_weights": weights} if weights == "int8" else {}  # the script's explicit dtype would mean fp32
    engine_code = (f"{_engine_setup(engine, [spec], **more)}\n\nresult = {call}\n"
                   "print(result.language, result.text)\n")
    kind, _, where = spec.source.partition(":")
    checkpoint = where if kind == "whisper" else str(resolve_files(spec, engine.settings))
    note = ("openai-whisper's transcribe() cuts the audio into windows its own way (the engine cuts at pauses and "
            "batches the windows), so long recordings may differ at the window edges.")
    reduced = []  # what the engine ran in less than fp32 (on the CPU; a GPU runs whisper in the dtype, as here)
    if engine.policy.device == "cpu" and engine.policy.encoder_dtype_name != "float32":
        reduced.append(f"its audio encoder in {engine.policy.encoder_dtype_name}")
    if weights == "int8":
        reduced.append("its decoder's weights in int8")
    if reduced:
        note += (f" The engine ran {' and '.join(reduced)} on this CPU (--encoder-dtype, --speech-weights); this "
                 "script runs fp32, so a word may differ.")
    lang = None if (language or "auto") == "auto" else language
    origin = (f"openai-whisper's checkpoint {where}" if kind == "whisper"
              else "the openai-whisper checkpoint converted by `python -m engine.packaged`")
    plain = _code(f"""
        # {spec.name}: {origin}
        # Note: {note}
        import whisper

        model = whisper.load_model({checkpoint!r}, device={engine.policy.device!r})
        out = model.transcribe({audio_path!r}, language={lang!r}, task={result.task!r}, temperature=0.0,
                               fp16={engine.policy.dtype_name == "float16"})
        print(out["language"], out["text"].strip())
    """)
    return Snippets(engine_code, plain, (note,))
