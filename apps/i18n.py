"""Every translated UI string, in English and Simplified Chinese (the Lab tabs' in apps/i18n_lab.py); gradio
picks the language from the browser (``zh-CN``, ``zh``: Chinese; anything else: English).

    gr.Button(t("attention.show"))        # a key: the page shows the text in the visitor's language

:data:`I18N` goes to ``demo.launch(i18n=...)`` (``app.build_app`` arranges that). Only what the page builds is
translated this way (labels, Markdown, buttons, tab titles); what a model or an event returns stays in English.
"""
from __future__ import annotations

import gradio as gr

from .i18n_lab import LAB_STRINGS

LOCALES = ("en", "zh-CN")

STRINGS: dict[str, dict[str, str]] = {
    # --- the app shell ---------------------------------------------------------------------------------------------
    "app.intro": {
        "en": "# LLM Lab\nSee how language models work: a **generative** model (GPT-type) predicts the next token with "
              "a softmax over its vocabulary; **discriminative** models (BERT-type) read the whole text and classify "
              "it or point at an answer span; encoder-decoders translate; Whisper turns speech into text. Every tab "
              "runs on one shared engine. New here? Start with **Start here**.",
        "zh-CN": "# LLM 实验室\n看看语言模型是怎样工作的:**生成式**模型(GPT 类)用词表上的 softmax 预测下一个词元;"
                 "**判别式**模型(BERT 类)读完整段文字,再给它分类或指出答案所在的片段;编码器-解码器做翻译;"
                 "Whisper 把语音转成文字。所有标签页共用同一个推理引擎。第一次来?从 **从这里开始** 看起。",
    },
    "tab.start-here": {"en": "Start here", "zh-CN": "从这里开始"},
    "tab.text-generation": {"en": "Text generation", "zh-CN": "文本生成"},
    "tab.attention": {"en": "Attention", "zh-CN": "注意力"},
    "tab.translation": {"en": "Translation", "zh-CN": "翻译"},
    "tab.question-answering": {"en": "Question answering", "zh-CN": "问答"},
    "tab.sentiment": {"en": "Sentiment", "zh-CN": "情感分析"},
    "tab.speech-to-text": {"en": "Speech to text", "zh-CN": "语音转文字"},
    "tab.engine": {"en": "Engine", "zh-CN": "引擎"},
    "tab.pretrain": {"en": "Pretrain", "zh-CN": "预训练"},
    "tab.fine-tune": {"en": "Fine-tune", "zh-CN": "微调"},
    "tab.embeddings": {"en": "Embeddings", "zh-CN": "词向量"},
    # --- shared words ----------------------------------------------------------------------------------------------
    "common.model": {"en": "Model", "zh-CN": "模型"},
    "common.examples": {"en": "Examples", "zh-CN": "示例"},
    "common.code": {"en": "Code: reproduce this result in Python", "zh-CN": "代码:用 Python 复现这个结果"},
    "common.code_engine": {"en": "With this app's engine", "zh-CN": "用本应用的引擎"},
    "common.code_plain": {"en": "With the plain libraries", "zh-CN": "只用原始库"},
    # --- Start here ------------------------------------------------------------------------------------------------
    "start.intro": {
        "en": "## Start here\nLarge language models are made in two stages. **Pretraining** reads a mountain of raw "
              "text and learns two things: *word embeddings* (each word becomes a vector, so that similar words lie "
              "close together) and *next-word prediction* (given the words so far, a probability for every possible "
              "next word). **Fine-tuning** then adapts the pretrained model to a task with a few labelled examples. "
              "The **applications** come in two families: **generative** models (GPT-type) write text one token at a "
              "time; **discriminative** models (BERT-type) read the whole text at once and decide something about it. "
              "Click a box to open the tab that shows it.",
        "zh-CN": "## 从这里开始\n大语言模型分两步做成。**预训练**读海量的原始文本,学会两件事:*词向量*"
                 "(每个词变成一个向量,意思相近的词彼此靠近)和*下一个词预测*(给定前面的词,为每个可能的下一个词"
                 "给出概率)。**微调**再用少量带标签的例子,让预训练好的模型适应某个任务。**应用**分两大类:"
                 "**生成式**模型(GPT 类)一个词元一个词元地写出文字;**判别式**模型(BERT 类)一次读完整段文字,"
                 "再对它做出判断。点击图中的方框,打开展示它的标签页。",
    },
    "start.map": {
        "en": """```mermaid
flowchart LR
  subgraph PRE["1 · Pretraining: learn from raw text"]
    EMB["Word embeddings<br/>words as vectors"]
    NWP["Next-word prediction<br/>P(word | context)"]
    ATT["Inside the model<br/>attention"]
  end
  subgraph FT["2 · Fine-tuning: adapt to a task"]
    FIN["Fine-tune<br/>a few labelled examples"]
  end
  subgraph APP["3 · Applications"]
    subgraph GEN["Generative · GPT-type: writes"]
      TG["Text generation"]
      LENS["Next-token lens"]
      MT["Translation"]
      ASR["Speech to text"]
    end
    subgraph DIS["Discriminative · BERT-type: reads and decides"]
      QA["Question answering"]
      SEN["Sentiment"]
    end
  end
  EMB --> NWP
  NWP --> FIN
  FIN --> GEN
  FIN --> DIS
  click EMB href "?tab=embeddings" _self
  click NWP href "?tab=pretrain" _self
  click ATT href "?tab=attention" _self
  click FIN href "?tab=fine-tune" _self
  click TG href "?tab=text-generation" _self
  click LENS href "?tab=text-generation&view=lens" _self
  click MT href "?tab=translation" _self
  click ASR href "?tab=speech-to-text" _self
  click QA href "?tab=question-answering" _self
  click SEN href "?tab=sentiment" _self
```""",
        "zh-CN": """```mermaid
flowchart LR
  subgraph PRE["1 · 预训练:从原始文本中学习"]
    EMB["词向量<br/>把词变成向量"]
    NWP["下一个词预测<br/>P(词 | 上下文)"]
    ATT["模型内部<br/>注意力"]
  end
  subgraph FT["2 · 微调:适应一个任务"]
    FIN["微调<br/>少量带标签的例子"]
  end
  subgraph APP["3 · 应用"]
    subgraph GEN["生成式 · GPT 类:写"]
      TG["文本生成"]
      LENS["下一个词元透镜"]
      MT["翻译"]
      ASR["语音转文字"]
    end
    subgraph DIS["判别式 · BERT 类:读并判断"]
      QA["问答"]
      SEN["情感分析"]
    end
  end
  EMB --> NWP
  NWP --> FIN
  FIN --> GEN
  FIN --> DIS
  click EMB href "?tab=embeddings" _self
  click NWP href "?tab=pretrain" _self
  click ATT href "?tab=attention" _self
  click FIN href "?tab=fine-tune" _self
  click TG href "?tab=text-generation" _self
  click LENS href "?tab=text-generation&view=lens" _self
  click MT href "?tab=translation" _self
  click ASR href "?tab=speech-to-text" _self
  click QA href "?tab=question-answering" _self
  click SEN href "?tab=sentiment" _self
```""",
    },
    "start.path_title": {
        "en": "## A ten-minute path\nFive steps; each button opens its tab with an example filled in. Press the tab's "
              "main button to run it.",
        "zh-CN": "## 十分钟入门路线\n共五步;每个按钮都会打开对应的标签页并填好示例。按下该页的主按钮即可运行。",
    },
    "start.step1": {
        "en": "**1 · Watch a model write** (2 min). A small instruct model, SmolLM2, answers a prompt token by token; "
              "each token is coloured by how sure the model was.",
        "zh-CN": "**1 · 看模型写字**(2 分钟)。一个小型指令模型 SmolLM2 逐个词元地回答提示;"
                 "每个词元的颜色表示模型当时有多确定。",
    },
    "start.step1.button": {"en": "Open Text generation with an example", "zh-CN": "打开文本生成并填入示例"},
    "start.step2": {
        "en": "**2 · See the next-word probabilities** (2 min). The article's own example, 我 吃了一个 饼干 (\"I ate a "
              "biscuit\"): the model's softmax over its whole vocabulary, and how temperature, top-k and top-p "
              "reshape it.",
        "zh-CN": "**2 · 看下一个词的概率**(2 分钟)。用文章里的例子「我 吃了一个 饼干」:模型在整个词表上的 "
                 "softmax 分布,以及温度、top-k、top-p 如何改变它。",
    },
    "start.step2.button": {"en": "Open the Next-token lens with 我 吃了一个 饼干",
                           "zh-CN": "用「我 吃了一个 饼干」打开下一个词元透镜"},
    "start.step3": {
        "en": "**3 · Look inside: attention** (2 min). Which earlier words each word looks at, layer by layer and head "
              "by head; the head that tracks the previous word is picked out for you.",
        "zh-CN": "**3 · 看看模型内部:注意力**(2 分钟)。每个词在每一层、每个注意力头里关注前面的哪些词;"
                 "专门盯着前一个词的那个头已经替你挑出来了。",
    },
    "start.step3.button": {"en": "Open Attention with an example", "zh-CN": "打开注意力页并填入示例"},
    "start.step4": {
        "en": "**4 · A discriminative model reads and points** (2 min). An extractive (BERT-type) reader does not "
              "write: it marks where in the text the answer is.",
        "zh-CN": "**4 · 判别式模型读完再指出答案**(2 分钟)。抽取式(BERT 类)阅读模型不写字,"
                 "而是标出答案在原文中的位置。",
    },
    "start.step4.button": {"en": "Open Question answering with an example", "zh-CN": "打开问答页并填入示例"},
    "start.step5": {
        "en": "**5 · From speech to text** (2 min). Whisper, an encoder-decoder, listens to a short clip, detects its "
              "language and writes what it hears, with timestamps.",
        "zh-CN": "**5 · 从语音到文字**(2 分钟)。编码器-解码器模型 Whisper 听一段短音频,识别语言,"
                 "并写出带时间戳的文字。",
    },
    "start.step5.button": {"en": "Open Speech to text with a recording", "zh-CN": "打开语音转文字并载入录音"},
    "start.more": {
        "en": "Then make your own: **Pretrain** a tiny GPT on a text of your choice, **Fine-tune** a classifier on a "
              "few labelled examples, and explore **Embeddings**. The **Engine** tab shows which models are on this "
              "machine and how to get the others. Every result has a **Code** panel that reproduces it in Python.",
        "zh-CN": "接下来自己动手:用你选的文本**预训练**一个迷你 GPT,用几个带标签的例子**微调**一个分类器,"
                 "再去探索**词向量**。**引擎**页显示本机有哪些模型、其余的怎样获取。每个结果都有一个**代码**面板,"
                 "可以在 Python 里复现它。",
    },
    # --- Attention -------------------------------------------------------------------------------------------------
    "attention.intro": {
        "en": "Inside a transformer, every layer lets each token *look at* the others: **attention** = softmax(Q·Kᵀ/√d) "
              "gives, for each token, weights over the tokens it may see (in a GPT-type model only the ones before "
              "it; in a BERT-type encoder all of them). Each layer has several **heads** that look for different "
              "things. Pick a layer and a head to see its map; some heads simply look at the previous token, others "
              "park their attention on the first token.",
        "zh-CN": "在 Transformer 里,每一层都让每个词元去*看*其他词元:**注意力** = softmax(Q·Kᵀ/√d),"
                 "为每个词元给出它能看到的词元上的权重(GPT 类模型只能看前面的词元;BERT 类编码器能看全部)。"
                 "每一层有多个**注意力头**,各自寻找不同的东西。选一层、一个头,看它的注意力图;"
                 "有的头只看前一个词元,有的头把注意力停在第一个词元上。",
    },
    "attention.text": {"en": "Text (a prompt or a sentence)", "zh-CN": "文本(提示或句子)"},
    "attention.show": {"en": "Show the attention", "zh-CN": "显示注意力"},
    "attention.layer": {"en": "Layer", "zh-CN": "层"},
    "attention.head": {"en": "Head", "zh-CN": "头"},
    "attention.previous_head": {"en": "Go to the previous-token head", "zh-CN": "跳到「前一个词元」头"},
    "attention.first_head": {"en": "Go to the first-token head", "zh-CN": "跳到「第一个词元」头"},
    "attention.all_heads": {"en": "Every head of this layer", "zh-CN": "这一层的所有注意力头"},
    # --- other tabs: titles, intros and main buttons ---------------------------------------------------------------
    "generation.intro": {
        "en": 'A **generative** (GPT-type) language model reads the text so far and gives every token of its vocabulary a\nprobability: *P(w | context) = softmax(logits)*. Generating text repeats one step: reshape that distribution\n(**temperature**, **top-k**, **top-p**, **repetition penalty**), pick a token (the most likely one at temperature 0),\nappend it, and go again. The **Next-token lens** shows that distribution and lets you step through it by hand.',
        "zh-CN": '**生成式**(GPT 类)语言模型读入目前为止的文本,为词表里的每个词元给出一个概率:*P(w | 上下文) = softmax(logits)*。生成文本就是重复一步:调整这个分布(**温度**、**top-k**、**top-p**、**重复惩罚**),选出一个词元(温度为 0 时选最可能的那个),接到文本后面,再来一次。**下一个词元透镜**展示这个分布,并让你一步一步手动走下去。',
    },
    "translation.intro": {
        "en": 'Two kinds of model translate here. A **specialist encoder-decoder** (Marian opus-mt, NLLB, M2M100) reads\nthe whole source sentence with its encoder, then writes the target with its decoder; it was trained on nothing but\ntranslation pairs. The **instruct LLM** is a generative decoder that translates because it was asked to in a prompt.\nTick *side by side* to compare them on the same text, then score either against references with sacrebleu. The packaged\nLLM is small (SmolLM2, 135M parameters): expect the specialist to win by far; that gap is the lesson.',
        "zh-CN": '这里有两类模型做翻译。**专用的编码器-解码器**(Marian opus-mt、NLLB、M2M100)先用编码器读完整个源句,再用解码器写出译文;它只用翻译句对训练过。**指令 LLM** 是生成式解码器,它翻译是因为提示里这样要求它。勾选*并排比较*,在同一段文字上比较两者,再用 sacrebleu 对照参考译文打分。打包自带的 LLM 很小(SmolLM2,1.35 亿参数):专用模型会大幅领先,这个差距正是要学的一课。',
    },
    "qa.intro": {
        "en": 'An **extractive** model (BERT-type) reads the question and the context together and scores every token as\nthe start and the end of the answer; the answer is the best span *of the context*, so it is always copied from it.\nLong contexts are read in overlapping windows. A **generative** LLM writes its answer instead, which may or may not\noccur in the context.',
        "zh-CN": '**抽取式**模型(BERT 类)把问题和上下文一起读入,为每个词元打分:它作为答案开头和结尾的可能性;答案是*上下文中*得分最高的片段,所以总是从原文里摘出来的。长的上下文会分成相互重叠的窗口来读。**生成式** LLM 则是自己写出答案,答案不一定出现在上下文里。',
    },
    "sentiment.intro": {
        "en": "A **sequence classifier** (BERT-type) reads the whole text and outputs one probability per label. The\nwords are weighed by **occlusion**: each word is dropped in turn and the drop in the predicted label's probability\nis its importance (green pushed for the label, red against it). The **instruct LLM** classifies zero-shot, from its\nnext-token probabilities of the label words.",
        "zh-CN": '**序列分类器**(BERT 类)读完整段文字,为每个标签输出一个概率。词语的作用用**遮挡法**衡量:依次去掉每个词,预测标签的概率下降多少,就是这个词的重要性(绿色推向该标签,红色反对它)。**指令 LLM** 做零样本分类,依据的是它对各个标签词的下一个词元概率。',
    },
    "speech.intro": {
        "en": '**Whisper** is an encoder-decoder: the encoder reads a log-mel spectrogram of 30 seconds of audio, the\ndecoder writes the text token by token, with timestamp tokens that mark where each segment starts and ends. It can\ndetect the language (its first token), and translate into English. Long recordings are cut into windows of up to\n30 seconds at pauses.',
        "zh-CN": '**Whisper** 是编码器-解码器:编码器读入 30 秒音频的对数梅尔频谱,解码器逐个词元写出文字,并用时间戳词元标出每一段的起止。它能识别语言(它输出的第一个词元),也能翻译成英文。长录音会在停顿处切成最长 30 秒的窗口。',
    },
    "engine.intro": {
        "en": "One engine serves every tab: models load on first use, once, and share one memory budget. "
              "**On this machine** says for each model whether it is *packaged* (installed from PyPI and "
              "converted: loads at once, offline), *on disk* (in the hub cache or a folder), or needs a "
              "*download* on first use, and **how to get it** says what to run.",
        "zh-CN": "所有标签页共用一个引擎:模型在第一次使用时加载,只加载一次,并共享同一份内存预算。"
                 "**本机状态**一栏说明每个模型是*已打包*(从 PyPI 安装并已转换:立即加载,可离线使用)、"
                 "*已在磁盘上*(在 hub 缓存或某个文件夹里),还是第一次使用时需要*下载*;**获取方式**一栏说明要运行什么。",
    },
    "engine.unload": {"en": "Unload", "zh-CN": "卸载"},
    "engine.refresh": {"en": "Refresh", "zh-CN": "刷新"},
    "generation.generate": {"en": "Generate", "zh-CN": "生成"},
    "generation.lens_note": {
        "en": "**Chinese and the tokenizer.** SmolLM2's tokenizer is byte-level BPE trained mostly on English: a "
              "common Chinese word such as 了 or 一个 is one token, but rarer characters are split into pieces of "
              "their UTF-8 bytes (我 is two tokens, ␣饼干 five: the space rides on the first byte), so the lens may show a fragment such as ‹E9› as the "
              "likely next token: the first byte of a character still to come.",
        "zh-CN": "**中文与分词器。** SmolLM2 的分词器是主要用英文训练的字节级 BPE:「了」「一个」这样的常见词是一个"
                 "词元,但较少见的汉字会被拆成 UTF-8 字节的片段(「我」是两个词元,带前导空格的「饼干」是五个),"
                 "所以透镜里最可能的下一个词元可能是 ‹E9› 这样的片段:一个还没写完的汉字的第一个字节。",
    },
    "translation.translate": {"en": "Translate", "zh-CN": "翻译"},
    "qa.answer": {"en": "Answer", "zh-CN": "回答"},
    "sentiment.classify": {"en": "Classify", "zh-CN": "分类"},
    "speech.transcribe": {"en": "Transcribe", "zh-CN": "转写"},
}
STRINGS.update(LAB_STRINGS)  # the Lab tabs' strings live in apps/i18n_lab.py


def t(key: str) -> gr.I18nData:
    """The translatable text for ``key`` (a KeyError at build time for a key that has no translations)."""
    if key not in STRINGS:
        raise KeyError(f"No UI string {key!r} in apps/i18n.py; add it with its English and Chinese versions.")
    return I18N(key)


def english(key: str) -> str:
    """The English text of ``key``, for code that needs a plain string (tests, logs)."""
    return STRINGS[key]["en"]


def has(key: str) -> bool:
    return key in STRINGS


def _translations() -> dict[str, dict[str, str]]:
    by_locale = {locale: {key: texts[locale] for key, texts in STRINGS.items()} for locale in LOCALES}
    by_locale["zh"] = by_locale["zh-CN"]  # browsers that say only "zh"
    return by_locale


I18N = gr.I18n(**_translations())
