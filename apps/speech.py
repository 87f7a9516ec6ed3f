"""The Speech to text tab: record or upload audio; Whisper transcribes it (or translates it into English) in
30-second windows with a progress bar, shows the detected language with its top candidates, the segments with
their times, and offers the transcript as SRT, WebVTT, TXT and JSON.

Public endpoint: ``/transcribe`` (``audio``: a file; ``language``: ``"auto"`` or a code or name; ``task``:
``"transcribe"`` or ``"translate"``; ``model``: optional) -> the text, the detected language (a label with the
candidates' probabilities) and the segments (start and end in seconds, text).
"""
from __future__ import annotations

import concurrent.futures
import queue
from pathlib import Path

import gradio as gr

from engine import Engine, InvalidInputError, codegen
from engine.audio import format_duration
from engine.subtitles import write_all
from engine.tasks import speech
from engine.tasks.speech import Transcript

from .code_panel import code_panel, code_values
from .common import DOWNLOADS, model_choices, model_label, model_work, user_errors
from .i18n import t
from .loading import ensure_loaded

SEGMENT_HEADERS = ["start (s)", "end (s)", "text"]
TASK_CHOICES = [("Transcribe", "transcribe"), ("Translate into English", "translate")]
PROGRESS_POLL_S = 0.25  # how often the page's progress bar is refreshed from the engine's reports
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "audio"
EXAMPLES = [ASSETS / "tokens-en.wav", ASSETS / "biscuit-zh.wav"]  # synthesised clips; see assets/README.md
# the intro is in apps/i18n.py ("speech.intro"), in English and Chinese


def language_choices() -> list[tuple[str, str]]:
    from whisper.tokenizer import LANGUAGES

    named = sorted((name.title(), code) for code, name in LANGUAGES.items())
    return [("Detect automatically", speech.AUTO)] + [(f"{name} ({code})", code) for name, code in named]


def detected_label(t: Transcript) -> dict[str, float] | str:
    """What the Label shows: the candidate languages and their probabilities, or why there are none."""
    if t.no_speech:
        return speech.NO_SPEECH
    if not t.language_probs:
        return {f"{t.language_name} ({t.language})": 1.0}
    return {f"{speech.language_name(code)} ({code})": p for code, p in t.language_probs}


def segment_rows(t: Transcript) -> list[list]:
    return [[round(s.start, 2), round(s.end, 2), s.text] for s in t.segments]


def status_markdown(t: Transcript) -> str:
    head = f"**{t.message}**" if t.no_speech else (
        f"**{len(t.segments)} segments** · {t.language_name}" + (" → English" if t.task == "translate" else ""))
    tm = t.timings
    return (f"{head} · {format_duration(t.duration_s)} of audio · model **{t.model}** took {tm.model_s:.1f} s "
            f"(real-time factor {tm.real_time_factor:.2f}; {tm.windows} window(s) decoded)")


def subtitle_files(t: Transcript, audio_path: str | None) -> list[str]:
    """SRT, WebVTT, TXT and JSON, named after the uploaded file, in the app's downloads folder."""
    if t.no_speech:
        return []
    meta = {"model": t.model, "task": t.task, "language": t.language, "duration_s": round(t.duration_s, 3)}
    paths = write_all(t.segments, DOWNLOADS.folder(), Path(audio_path).stem if audio_path else "transcript", meta)
    return [str(p) for p in paths.values()]


def run_with_progress(engine: Engine, audio: str, model: str | None, language: str, task: str,
                      progress: gr.Progress | None) -> Transcript:
    """Transcribe in the engine's worker while this (gradio's) thread relays its progress reports to the page:
    ``gr.Progress`` only works from the event's own thread."""
    reports: "queue.SimpleQueue[tuple[float, str]]" = queue.SimpleQueue()
    request = speech.submit(engine, audio, model or None, language=language, task=task,
                            progress=lambda fraction, message: reports.put((fraction, message)))
    try:
        while True:
            done, _ = concurrent.futures.wait([request.future], timeout=PROGRESS_POLL_S)
            latest = None
            while not reports.empty():
                latest = reports.get()
            if latest is not None and progress is not None:
                progress(latest[0], desc=latest[1])
            if done:
                return request.result()
    finally:
        if not request.future.done():  # the event went away (an error here, a closed page): stop the work
            request.cancel()


def build(engine: Engine) -> gr.Blocks:
    choices, default = model_choices(engine, speech.TASK)

    @user_errors
    def transcribe(audio: str | None, language: str = speech.AUTO, task: str = "transcribe",
                   model: str | None = None, progress=gr.Progress()):
        """Transcribe ``audio`` (or translate it into English): the text, the detected language with its
        candidates, and the segments as rows of (start, end, text), times in seconds."""
        if not audio:
            raise InvalidInputError("Record something or upload an audio file first.")
        ensure_loaded(engine, speech.TASK, model, progress)  # which model, its size, and progress while it loads
        result = run_with_progress(engine, audio, model, language, task, progress)
        return result.text, detected_label(result), segment_rows(result), result

    @user_errors
    def files_and_status(result: Transcript | None, audio: str | None, language: str | None):
        if result is None:
            return [], "", gr.skip(), gr.skip()
        if result.no_speech:
            gr.Warning(result.message)
        code = code_values(lambda: codegen.transcription_code(engine, audio, result, language))
        return subtitle_files(result, audio), status_markdown(result), *code

    def model_changed(name: str | None):
        english_only = bool(name) and speech.is_english_only(engine.spec(speech.TASK, name))
        label = model_label(engine, speech.TASK, name) if name else ""
        if english_only:
            return label, gr.Dropdown(value="en"), gr.Radio(value="transcribe")
        return label, gr.Dropdown(), gr.Radio()

    with gr.Blocks() as tab:
        gr.Markdown(t("speech.intro"))
        with gr.Row():
            with gr.Column(scale=3):
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Recording or audio file")
                gr.Examples([[str(p)] for p in EXAMPLES if p.exists()], [audio], label=t("common.examples"))
            with gr.Column(scale=2):
                model = gr.Dropdown(choices, value=default, label="Model")
                about = gr.Markdown(model_label(engine, speech.TASK, default))
                language = gr.Dropdown(language_choices(), value=speech.AUTO, label="Spoken language",
                                       allow_custom_value=True, info="Detected from the audio, or forced.")
                task = gr.Radio(TASK_CHOICES, value="transcribe", label="Task")
                button = gr.Button(t("speech.transcribe"), variant="primary")
        status = gr.Markdown()
        with gr.Row():
            text = gr.Textbox(label="Transcript", lines=8, max_lines=20, scale=3)
            detected = gr.Label(label="Detected language", num_top_classes=speech.TOP_LANGUAGES, scale=1)
        segments = gr.Dataframe(headers=SEGMENT_HEADERS, label="Segments", interactive=False, wrap=True)
        downloads = gr.File(label="Downloads (SRT, WebVTT, TXT, JSON)", file_count="multiple", interactive=False)
        code_engine, code_plain = code_panel()
        result = gr.State(None)

        button.click(transcribe, [audio, language, task, model], [text, detected, segments, result],
                     api_name="transcribe", **model_work(engine)).success(
            files_and_status, [result, audio, language], [downloads, status, code_engine, code_plain],
            api_visibility="private", queue=False)
        model.change(model_changed, model, [about, language, task], api_visibility="private", queue=False)
    tab.example_inputs = [audio]  # what Start here's guided path fills (apps/shell.py)
    return tab
