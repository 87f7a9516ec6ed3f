"""Trained models on disk: one folder per model under ``$LLM_LAB_CACHE/trained``, each a registry model.

A folder holds what the runtime that serves its family loads (a transformers ``config.json``, weights as
``model.safetensors``, the tokenizer files) and ``card.json``: a :class:`Card` with the settings the model was trained
with, where its data came from, and its final metrics. Folders are written under a staging name and renamed into
place when complete, so a crash or a stop never leaves half a model under a real name. At start the engine scans the
folder and registers every model in it (:meth:`TrainedModels.scan`), so a trained model survives a restart.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import re
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import InvalidInputError, InvalidOptionsError, UnknownModelError
from ..registry import ModelSpec, Registry

log = logging.getLogger(__name__)

CARD = "card.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclasses.dataclass(frozen=True)
class Card:
    """What a trained model is and how it was made; written as ``card.json`` beside its weights."""

    name: str
    task: str  # the registry task it serves: text-generation, sentiment, ...
    family: str  # the runtime that serves it: causal-lm, sequence-classification, ...
    kind: str  # "pretrained from scratch", "fine-tuned classifier", "LoRA fine-tuned language model", ...
    description: str
    base: str | None = None  # the model it started from; None when trained from scratch
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # every option the run used
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # final losses, accuracy, ...
    data: dict[str, Any] = dataclasses.field(default_factory=dict)  # where the text came from, its size and hash
    labels: tuple[str, ...] = ()  # classifiers: the label names, in the order of the model's outputs
    chat: bool = False  # served through a chat template
    size: str = ""  # parameters and bytes, as shown to users
    created: str = ""  # ISO 8601, UTC

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> "Card":
        data = json.loads(text)
        fields = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in fields}
        data["labels"] = tuple(data.get("labels", ()))
        return cls(**data)

    def spec(self, folder: Path) -> ModelSpec:
        """The registry entry that serves this model from ``folder``."""
        return ModelSpec(self.name, self.task, self.family, f"path:{folder}", license="trained in this app",
                         size=self.size, description=f"{self.description} (trained here: {self.kind})",
                         chat=self.chat, labels=self.labels)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_model_name(name: Any, registry: Registry, trained: "TrainedModels",
                     task: str | None = None) -> str:
    """A name for a new trained model: letters, digits, '.', '_' and '-', not the name of a built-in model (a model
    trained earlier under the same name is replaced, when it served the same ``task``)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name.strip()):
        raise InvalidOptionsError(f"name must be 1 to 64 letters, digits, '.', '_' or '-' (starting with a letter "
                                  f"or digit), got {name!r}.")
    name = name.strip()
    if name in registry.names() and not trained.has(name):
        raise InvalidOptionsError(f"The name {name!r} belongs to a built-in model; choose another name.")
    if task is not None and name in registry.names() and registry.get(name).task != task:
        raise InvalidOptionsError(f"{name!r} is already a trained {registry.get(name).task} model; choose another "
                                  "name.")
    return name


class TrainedModels:
    """The trained-models folder, kept in step with the registry."""

    def __init__(self, root: Path, registry: Registry, unload: Callable[[str], bool]) -> None:
        self.root = Path(root)
        self.registry = registry
        self._unload = unload
        self._cards: dict[str, Card] = {}
        self._lock = threading.Lock()

    def scan(self) -> list[Card]:
        """Register every complete model folder under the root (a folder without a readable card is skipped)."""
        if not self.root.is_dir():
            return []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                card = Card.from_json((folder / CARD).read_text(encoding="utf-8"))
                if card.name != folder.name:
                    raise ValueError(f"its card names {card.name!r}")
                self._register(card, folder)
            except (OSError, ValueError, TypeError, InvalidInputError) as e:
                log.warning("skipping the trained model folder %s: %s", folder, e)
        return self.cards()

    def _register(self, card: Card, folder: Path) -> ModelSpec:
        spec = card.spec(folder)
        with self._lock:
            self.registry.add(spec)
            self._cards[card.name] = card
        return spec

    def has(self, name: str) -> bool:
        return name in self._cards

    def cards(self, task: str | None = None) -> list[Card]:
        """The trained models (of ``task``, when given), newest first."""
        with self._lock:
            cards = list(self._cards.values())
        if task is not None:
            from ..registry import canonical_task

            task = canonical_task(task)
            cards = [c for c in cards if c.task == task]
        return sorted(cards, key=lambda c: c.created, reverse=True)

    def card(self, name: str) -> Card:
        with self._lock:
            card = self._cards.get(name)
        if card is None:
            raise UnknownModelError(name, list(self._cards), what="trained model")
        return card

    def folder(self, name: str) -> Path:
        return self.root / name

    def staging(self, name: str) -> Path:
        """A new empty folder to write a model into before :meth:`publish` puts it in place."""
        folder = self.root / f".staging-{name}-{secrets.token_hex(4)}"
        folder.mkdir(parents=True)
        return folder

    def publish(self, staging: Path, card: Card) -> ModelSpec:
        """Write the card into ``staging``, move the folder into place (replacing an earlier model of that name, which
        is unloaded first) and register it. Returns its registry entry."""
        (staging / CARD).write_text(card.to_json(), encoding="utf-8")
        target = self.folder(card.name)
        self._unload(card.name)
        old = None
        if target.exists():
            old = self.root / f".old-{card.name}-{secrets.token_hex(4)}"
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log.info("trained model %r saved in %s", card.name, target)
        return self._register(card, target)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def save_pretrained(self, name: str, model: Any, tokenizer: Any, card: Callable[[str], Card]) -> str:
        """Write a transformers model and its tokenizer (from the CPU, in eval mode) and publish them with the card
        ``card(size)`` makes (``size``: parameters and bytes, as shown to users); nothing is left behind when any of
        it fails. Returns the model's name."""
        staging = self.staging(name)
        try:
            model.to("cpu").eval()
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            n_params = sum(p.numel() for p in model.parameters())
            size = f"{n_params / 1e6:.1f}M params, {sum(f.stat().st_size for f in staging.iterdir()) / 1e6:.0f} MB"
            return self.publish(staging, card(size)).name
        except BaseException:
            self.discard(staging)
            raise

    def delete(self, name: str) -> None:
        """Unload, unregister and remove a trained model. Built-in models cannot be deleted."""
        if not self.has(name):
            if name in self.registry.names():
                raise InvalidInputError(f"{name!r} is a built-in model; only models trained in this app can be "
                                        "deleted.")
            raise UnknownModelError(name, [c.name for c in self.cards()], what="trained model")
        self._unload(name)
        with self._lock:
            self._cards.pop(name, None)
            self.registry.remove(name)
        shutil.rmtree(self.folder(name), ignore_errors=True)
        log.info("trained model %r deleted", name)
