"""The Engine tab: the device and precision with the reason for them, the models in memory (with an unload
button), and every model the registry knows."""
from __future__ import annotations

import gradio as gr

from engine import Engine
from engine.sources import availability

from .common import user_errors
from .i18n import t


def _compiled(engine: Engine) -> str:
    mode = engine.settings.compile
    return " (decoding step compiled, max-autotune)" if mode == "max-autotune" else " (decoding step compiled)"


def status_markdown(engine: Engine) -> str:
    s = engine.status()
    used = sum(m.nbytes for m in s.loaded)
    return (f"**Device:** `{s.device}` · **dtype:** `{s.dtype}` · **CPU threads:** {s.threads} · "
            f"**Generation weights:** `{_weights(engine)}`"
            f"{_compiled(engine) if engine.settings.compile else _packed(engine)} · "
            f"**Encoders:** `{engine.policy.encoder_dtype_name}` · **Whisper decoder:** {_speech_weights(engine)}  \n"
            f"**Why:** {s.reason}  \n"
            f"**AMX bf16 units:** {'yes' if s.amx else 'no'} · **Offline mode:** {'on' if s.offline else 'off'}  \n"
            f"**Memory:** {used / 2**20:,.0f} MB of a {s.budget_bytes / 2**30:,.1f} GB budget in "
            f"{len(s.loaded)} loaded model(s); the least recently used is unloaded beyond it.")


def _weights(engine: Engine) -> str:
    """The text-generation weights setting as it applies on this device (``auto`` resolved, see engine.weights)."""
    from engine.errors import InvalidOptionsError
    from engine.weights import resolve_weights

    chosen = engine.settings.weights
    try:
        resolved = resolve_weights(chosen, engine.policy.device.split(":")[0])
    except InvalidOptionsError as e:  # an explicit int8/int4 on a GPU: loading a model will say so; show it here too
        return f"{chosen} (not usable here: {e})"
    return resolved if chosen == resolved else f"{resolved} ({chosen})"


def _packed(engine: Engine) -> str:
    """Whether generation on this CPU reads weights packed once for oneDNN (engine.weights.packs): fp32 or bf16 ones,
    or the int8/int4 settings' output layer in bf16. (A compiled step is said instead, by the caller.)"""
    from engine.weights import packs, resolve_weights

    if engine.policy.device != "cpu":
        return ""
    resolved = resolve_weights(engine.settings.weights, "cpu")
    if not packs(resolved, "cpu"):
        return ""
    which = "" if resolved in ("fp32", "bf16") else "output layer in bf16, "
    return f" ({which}packed once for oneDNN)"


def _speech_weights(engine: Engine) -> str:
    """Whisper's decoder weights as they apply on this device, with the reason (engine.weights)."""
    from engine.errors import InvalidOptionsError
    from engine.tasks.speech import decoder_weights

    try:
        resolved, why = decoder_weights(engine)
    except InvalidOptionsError as e:
        return f"`{engine.settings.speech_weights}` (not usable here: {e})"
    return f"`{engine.policy.dtype_name if resolved == 'dtype' else resolved}` ({why})"


def loaded_rows(engine: Engine) -> list[list]:
    return [[m.name, m.task, m.family, round(m.nbytes / 2**20, 1), round(m.load_seconds, 2), m.served, m.pending,
             round(m.idle_seconds)] for m in engine.status().loaded]


def registry_rows(engine: Engine) -> list[list]:
    """Every registered model, with where its weights stand on this machine (checked without the network) and how
    to get them when they are not here."""
    loaded = {m.name for m in engine.status().loaded}
    rows = []
    for spec in (engine.registry.get(n) for n in engine.registry.names()):
        here = availability(spec, engine.settings)
        rows.append([spec.name, spec.task, spec.family, spec.source + (f"@{spec.revision}" if spec.revision else ""),
                     spec.license, spec.size, "yes" if spec.default else "", "loaded" if spec.name in loaded else "",
                     f"{here.state}: {here.detail}", here.how])
    return rows


LOADED_HEADERS = ["model", "task", "family", "memory (MB)", "load (s)", "requests served", "waiting", "idle (s)"]
REGISTRY_HEADERS = ["model", "task", "family", "source", "licence", "size", "default", "state", "on this machine",
                    "how to get it"]


def build(engine: Engine) -> gr.Blocks:
    with gr.Blocks() as tab:
        gr.Markdown(t("engine.intro"))
        status = gr.Markdown(status_markdown(engine))
        loaded = gr.Dataframe(loaded_rows(engine), headers=LOADED_HEADERS, label="Loaded models", interactive=False)
        with gr.Row():
            which = gr.Dropdown([r[0] for r in loaded_rows(engine)], label="Model to unload", scale=3,
                                allow_custom_value=False)
            unload = gr.Button(t("engine.unload"), variant="stop", scale=1)
            refresh = gr.Button(t("engine.refresh"), scale=1)
        registry = gr.Dataframe(registry_rows(engine), headers=REGISTRY_HEADERS, label="Registered models",
                                interactive=False)

        def snapshot():
            names = [r[0] for r in loaded_rows(engine)]
            return (status_markdown(engine), loaded_rows(engine), gr.Dropdown(choices=names, value=None),
                    registry_rows(engine))

        @user_errors
        def do_unload(name: str | None):
            if not name:
                raise gr.Error("Pick a loaded model to unload.")
            if not engine.unload(name):
                gr.Warning(f"{name} was not loaded.")
            return snapshot()

        outputs = [status, loaded, which, registry]
        refresh.click(snapshot, None, outputs, api_name="engine_status", queue=False)
        unload.click(do_unload, which, outputs, api_name="unload_model")
        tab.load(snapshot, None, outputs, api_visibility="private", queue=False)
    return tab
