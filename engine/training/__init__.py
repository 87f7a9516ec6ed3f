"""Making models, not only using them: pretraining a small GPT from scratch and fine-tuning pretrained models.

Training is engine work like inference. Two pieces are shared by every trainer:

- :mod:`engine.training.runner`: one training at a time per process, run in the engine's own training worker (a
  :class:`~engine.worker.Worker` thread, so the UI and notebooks only iterate progress events); a second start is
  refused with :class:`~engine.errors.BusyError`; closing the event iterator asks the trainer to stop, and the trainer
  keeps its last checkpoint.
- :mod:`engine.training.store`: a finished run is one folder under ``$LLM_LAB_CACHE/trained/NAME`` (weights as
  safetensors, the tokenizer, ``card.json`` with the settings and metrics). Each folder is a registry model (source
  ``path:``) that every tab serves with the existing runtimes; it is found again after a restart and can be deleted.

A trainer is a generator of small progress events (frozen dataclasses), as minGPT's ``Trainer`` reports through
callbacks: see :mod:`engine.training.pretrain` and :mod:`engine.training.finetune`.
"""
from .runner import TrainingWorker
from .store import Card, TrainedModels, check_model_name

__all__ = ["TrainingWorker", "TrainedModels", "Card", "check_model_name"]
