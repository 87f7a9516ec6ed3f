"""One module per task, each with the same shape: ``load(spec, files, engine) -> Served`` and public functions
that take the engine first. Shared helpers for all of them live in :mod:`engine.tasks.common`."""
