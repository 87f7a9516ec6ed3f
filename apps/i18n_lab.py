"""The UI strings of the three Lab tabs (Embeddings, Pretrain, Fine-tune) in English and Simplified Chinese;
:mod:`apps.i18n` merges them into its ``STRINGS``, so ``t("pretrain.train")`` works like any other key.

The English text is exactly what the tabs showed before they were translated (the browser tests find fields and
buttons by it). Hyperparameter names that are code (``n_layer``, ``learning_rate``) stay as they are in both.
"""
from __future__ import annotations

from engine.tasks.embedding import MAX_TEXTS

LAB_STRINGS: dict[str, dict[str, str]] = {
    # --- shared by the Lab tabs ------------------------------------------------------------------------------------
    "lab.model_name": {"en": "Model name", "zh-CN": "模型名称"},
    "lab.base_model": {"en": "Base model", "zh-CN": "基础模型"},
    "lab.batch_size": {"en": "Batch size", "zh-CN": "批大小"},
    "lab.learning_rate": {"en": "Learning rate", "zh-CN": "学习率"},
    "lab.training_loss": {"en": "Training loss", "zh-CN": "训练损失"},
    "lab.stop": {"en": "Stop", "zh-CN": "停止"},
    # --- Embeddings ------------------------------------------------------------------------------------------------
    "embeddings.intro": {
        "en": "**Embeddings** are vectors whose geometry carries meaning. A language model's first layer is a table "
              "with\none vector per token, *vec(w)*: words used alike get vectors that point alike (**cosine "
              "similarity** near 1), and\ndifferences between vectors can carry relations (*king − man + woman ≈ "
              "queen*). A **sentence encoder** (MiniLM) pools\nits token vectors into one vector per sentence, for "
              "similarity and search. And a model with tied embeddings scores\neach next word by an **inner "
              "product**: *P(w | context) = softmax(⟨vec(w), h⟩)*.",
        "zh-CN": "**嵌入**是用几何关系承载意义的向量。语言模型的第一层是一张表,每个词元对应一个向量 *vec(w)*:"
                 "用法相近的词,向量的方向也相近(**余弦相似度**接近 1),向量之间的差还能表示关系"
                 "(*king − man + woman ≈ queen*)。**句子编码器**(MiniLM)把各个词元向量池化成每句一个向量,"
                 "用来计算相似度和做搜索。而输入输出共享嵌入的模型用**内积**给每个可能的下一个词打分:"
                 "*P(w | 上下文) = softmax(⟨vec(w), h⟩)*。",
    },
    "embeddings.tab_words": {"en": "Word vectors", "zh-CN": "词向量"},
    "embeddings.table_of": {"en": "Token-embedding table of", "zh-CN": "词元嵌入表取自"},
    "embeddings.word": {"en": "Word", "zh-CN": "词"},
    "embeddings.neighbours_to_show": {"en": "Neighbours to show", "zh-CN": "显示的近邻个数"},
    "embeddings.find_neighbours": {"en": "Find neighbours", "zh-CN": "查找近邻"},
    "embeddings.nearest_tokens": {"en": "Nearest tokens", "zh-CN": "最近的词元"},
    "embeddings.analogy_note": {
        "en": "**Analogy** by vector arithmetic: the tokens nearest to *a − b + c* (the three words left out).",
        "zh-CN": "用向量运算做**类比**:离 *a − b + c* 最近的词元(不算这三个词本身)。",
    },
    "embeddings.b_minus": {"en": "b (minus)", "zh-CN": "b(减去)"},
    "embeddings.c_plus": {"en": "c (plus)", "zh-CN": "c(加上)"},
    "embeddings.solve_analogy": {"en": "Solve the analogy", "zh-CN": "求解类比"},
    "embeddings.tab_map": {"en": "Map", "zh-CN": "二维分布图"},
    "embeddings.example_list": {"en": "Example list", "zh-CN": "示例列表"},
    "embeddings.items": {"en": "Items, one per line (a group after | colours the points)",
                         "zh-CN": "条目,每行一个(在 | 后写上组名,点按组着色)"},
    "embeddings.vectors_from": {"en": "Vectors from", "zh-CN": "向量来自"},
    "embeddings.method": {"en": "Method", "zh-CN": "降维方法"},
    "embeddings.method_info": {
        "en": "PCA keeps distances along the two main directions; t-SNE and UMAP keep neighbourhoods (UMAP's first "
              "map takes about half a minute to compile).",
        "zh-CN": "PCA 保留沿两个主方向的距离;t-SNE 和 UMAP 保留邻域关系(UMAP 第一次画图需要约半分钟编译)。",
    },
    "embeddings.draw_map": {"en": "Draw the map", "zh-CN": "画出分布图"},
    "embeddings.map_plot": {"en": "2-D map (hover a point to read it)", "zh-CN": "二维分布图(鼠标悬停在点上查看内容)"},
    "embeddings.tab_sentences": {"en": "Sentence vectors", "zh-CN": "句向量"},
    "embeddings.sentence_encoder": {"en": "Sentence encoder", "zh-CN": "句子编码器"},
    "embeddings.sentences": {"en": "Sentences, one per line", "zh-CN": "句子,每行一个"},
    "embeddings.show_similarity": {"en": "Show similarity", "zh-CN": "显示相似度"},
    "embeddings.vectors_as": {"en": "Vectors as", "zh-CN": "向量格式"},
    "embeddings.download_vectors": {"en": "Download vectors", "zh-CN": "下载向量"},
    "embeddings.vectors_file": {"en": "Vectors (row i is line i)", "zh-CN": "向量(第 i 行对应第 i 句)"},
    "embeddings.heatmap": {"en": "Similarity heatmap", "zh-CN": "相似度热力图"},
    "embeddings.search_note": {
        "en": f"**Semantic search**: a query against up to {MAX_TEXTS:,} sentences (pasted or a .txt file, one per "
              "line), encoded once in length-sorted batches and kept for the next query.",
        "zh-CN": f"**语义搜索**:用一个查询在最多 {MAX_TEXTS:,} 个句子(粘贴进来,或一个 .txt 文件,每行一个)中搜索;"
                 "句子按长度排序、分批编码,只编码一次,并保留给下一次查询。",
    },
    "embeddings.query": {"en": "Query", "zh-CN": "查询"},
    "embeddings.corpus": {"en": "Sentences to search, one per line", "zh-CN": "要搜索的句子,每行一个"},
    "embeddings.corpus_file": {"en": "…or a .txt file", "zh-CN": "……或者一个 .txt 文件"},
    "embeddings.results": {"en": "Results", "zh-CN": "结果个数"},
    "embeddings.search": {"en": "Search", "zh-CN": "搜索"},
    "embeddings.closest": {"en": "Closest sentences", "zh-CN": "最相近的句子"},
    "embeddings.tab_inner": {"en": "Next word as an inner product", "zh-CN": "把下一个词看作内积"},
    "embeddings.prompt": {"en": "Prompt", "zh-CN": "提示"},
    "embeddings.tied_model": {"en": "Model (tied embeddings)", "zh-CN": "模型(输入输出共享嵌入)"},
    "embeddings.candidates": {"en": "Candidates", "zh-CN": "候选个数"},
    "embeddings.show_inner": {"en": "Show inner products", "zh-CN": "显示内积"},
    "embeddings.next_candidates": {"en": "Next-token candidates", "zh-CN": "下一个词元的候选"},
    # --- Pretrain --------------------------------------------------------------------------------------------------
    "pretrain.intro": {
        "en": "**Pretraining** is how a language model comes to be: it reads unlabelled text and learns to predict "
              "the next\ntoken, *P(w | context) = softmax(⟨vec(w), context⟩)*, by following the gradient of its loss "
              "with an optimizer\n(AdamW, Adam or SGD) and a learning rate. Here you train a small GPT from scratch — "
              "nanoGPT's recipe on a text of your\nchoice — and watch it go from noise to words. The model is saved "
              "under its name and appears in the **Text\ngeneration** tab (and its next-token lens) like any other "
              "model.",
        "zh-CN": "语言模型就是通过**预训练**得来的:它读入无标注的文本,学习预测下一个词元,"
                 "*P(w | 上下文) = softmax(⟨vec(w), 上下文⟩)*,方法是用优化器(AdamW、Adam 或 SGD)按一定的学习率"
                 "沿损失的梯度方向更新参数。在这里,你用自己选的文本、按 nanoGPT 的配方从零训练一个小型 GPT,"
                 "看它从一团噪声学会写出单词。模型以你起的名字保存,并像其他模型一样出现在**文本生成**标签页"
                 "(以及其中的下一个词元透镜)里。",
    },
    "pretrain.step_text": {"en": "### 1. The text", "zh-CN": "### 1. 训练文本"},
    "pretrain.training_text": {"en": "Training text", "zh-CN": "训练文本"},
    "pretrain.corpus": {"en": "Bundled corpus (public domain; see assets/README.md)",
                        "zh-CN": "自带语料(公有领域;见 assets/README.md)"},
    "pretrain.upload": {"en": "A .txt file (UTF-8)", "zh-CN": "一个 .txt 文件(UTF-8 编码)"},
    "pretrain.pasted": {"en": "Your text (at least 500 characters)", "zh-CN": "你的文本(至少 500 个字符)"},
    "pretrain.tokenizer": {"en": "Tokenizer: characters, or byte-level BPE learnt from the text",
                           "zh-CN": "分词器:按字符切分,或从文本中学出的字节级 BPE"},
    "pretrain.vocab_size": {"en": "BPE vocabulary size", "zh-CN": "BPE 词表大小"},
    "pretrain.preview": {"en": "Show how the text is tokenized", "zh-CN": "查看文本怎样切分成词元"},
    "pretrain.first_tokens": {"en": "The first tokens", "zh-CN": "开头的词元"},
    "pretrain.step_model": {"en": "### 2. The model and the recipe", "zh-CN": "### 2. 模型与训练配方"},
    "pretrain.preset": {"en": "Preset", "zh-CN": "预设"},
    "pretrain.more_recipe": {"en": "More of the recipe", "zh-CN": "更多训练配方"},
    "pretrain.lr_decay_iters": {"en": "lr_decay_iters (0 = max_iters)", "zh-CN": "lr_decay_iters(0 即等于 max_iters)"},
    "pretrain.beta1": {"en": "beta1 (sgd: momentum)", "zh-CN": "beta1(sgd:动量)"},
    "pretrain.grad_clip": {"en": "grad_clip (0 = off)", "zh-CN": "grad_clip(0 即不做梯度裁剪)"},
    "pretrain.name": {"en": "Model name (letters, digits, . _ -)", "zh-CN": "模型名称(字母、数字、. _ -)"},
    "pretrain.estimate": {"en": "Count parameters and time a few steps", "zh-CN": "统计参数量并试跑几步计时"},
    "pretrain.train": {"en": "Train", "zh-CN": "训练"},
    "pretrain.continue": {"en": "Continue this run (to max_iters)", "zh-CN": "继续这次训练(直到 max_iters)"},
    "pretrain.step_watch": {"en": "### 3. Watch it learn", "zh-CN": "### 3. 看它学习"},
    "pretrain.not_training": {"en": "Not training.", "zh-CN": "当前没有在训练。"},
    "pretrain.loss_plot": {"en": "Loss (cross-entropy, nats per token)", "zh-CN": "损失(交叉熵,单位:奈特/词元)"},
    "pretrain.lr_plot": {"en": "Learning-rate schedule", "zh-CN": "学习率调度"},
    "pretrain.latest_sample": {"en": "Latest sample (generated at the last evaluation)",
                               "zh-CN": "最新样本(在最近一次评估时生成)"},
    "pretrain.every_sample": {"en": "Every sample, newest first", "zh-CN": "全部样本,最新的在前"},
    "pretrain.step_compare": {"en": "### 4. Compare runs", "zh-CN": "### 4. 比较各次训练"},
    "pretrain.runs_to_overlay": {"en": "Runs to overlay", "zh-CN": "叠加显示的训练"},
    "pretrain.refresh_runs": {"en": "Refresh the list of runs", "zh-CN": "刷新训练列表"},
    "pretrain.val_loss_plot": {"en": "Validation loss of each run", "zh-CN": "各次训练的验证集损失"},
    "pretrain.no_runs_ticked": {"en": "*The validation curves of the runs ticked above are drawn here.*",
                                "zh-CN": "*上面勾选的训练,其验证集损失曲线画在这里。*"},
    "pretrain.settings_table": {"en": "Runs and their settings", "zh-CN": "各次训练及其设置"},
    "pretrain.run_to_delete": {"en": "Run to delete", "zh-CN": "要删除的训练"},
    "pretrain.delete": {"en": "Delete", "zh-CN": "删除"},
    # --- Fine-tune -------------------------------------------------------------------------------------------------
    "finetune.intro": {
        "en": "**Fine-tuning** adapts a pretrained model to a task: a new classification head on top of a pretrained"
              "\nencoder, trained on labelled examples, with more or less of the pretrained model adjusted too (a "
              "*linear probe*\ntrains the head only; the *top N layers*; the *whole model*; or small *LoRA* adapters "
              "beside the attention weights).\nEvery run is measured on held-out examples against two baselines — "
              "always guessing the most frequent label, and\nTF-IDF word features with logistic regression — so the "
              "gain is a number. The model is saved and appears in the\n**Sentiment** tab's model list (and "
              "`/classify`).",
        "zh-CN": "**微调**让预训练模型适应一个任务:在预训练的编码器上加一个新的分类头,用带标签的样本训练,"
                 "同时或多或少地调整预训练模型本身(*线性探测*只训练分类头;也可以训练*最上面 N 层*、*整个模型*,"
                 "或训练注意力权重旁边的小型 *LoRA* 适配器)。每次训练都在留出的样本上与两个基线比较——"
                 "总是猜最常见的标签,以及 TF-IDF 词特征加逻辑回归——提升多少是一个实实在在的数字。"
                 "模型会保存下来,并出现在**情感分析**标签页的模型列表(以及 `/classify`)里。",
    },
    "finetune.tab_classifier": {"en": "Classifier", "zh-CN": "分类器"},
    "finetune.data": {"en": "Data", "zh-CN": "数据"},
    "finetune.train_table": {"en": "Training table (CSV or TSV)", "zh-CN": "训练集表格(CSV 或 TSV)"},
    "finetune.test_table": {"en": "Test table (optional; otherwise a held-out split)",
                            "zh-CN": "测试集表格(可选;不提供则从训练数据中留出一部分)"},
    "finetune.text_column": {"en": "Text column", "zh-CN": "文本列"},
    "finetune.label_column": {"en": "Label column", "zh-CN": "标签列"},
    "finetune.held_out_share": {"en": "Held-out share (no test table)", "zh-CN": "留出比例(没有测试集表格时)"},
    "finetune.methods": {"en": "What to adjust (several: compared on the same split)",
                         "zh-CN": "调整哪些参数(可多选:在同一划分上比较)"},
    "finetune.top_layers": {"en": "Top layers unfrozen (Top N layers)", "zh-CN": "解冻的顶层层数(用于“最上面 N 层”)"},
    "finetune.optimizer": {"en": "Optimizer", "zh-CN": "优化器"},
    "finetune.learning_rate": {"en": "Learning rate (0: the method's default)", "zh-CN": "学习率(0:用该方法的默认值)"},
    "finetune.epochs": {"en": "Epochs", "zh-CN": "训练轮数"},
    "finetune.max_length": {"en": "Max length (tokens)", "zh-CN": "最大长度(词元数)"},
    "finetune.class_weights": {"en": "Class weights (inverse label frequency)",
                               "zh-CN": "类别权重(按标签频率的倒数)"},
    "finetune.seed": {"en": "Seed", "zh-CN": "随机种子"},
    "finetune.train": {"en": "Fine-tune", "zh-CN": "开始微调"},
    "finetune.epoch_table": {"en": "Held-out scores per epoch", "zh-CN": "每轮在留出集上的得分"},
    "finetune.results": {"en": "Results on the held-out examples (fine-tuned models and baselines)",
                         "zh-CN": "留出样本上的结果(微调后的模型与基线)"},
    "finetune.confusion": {"en": "Confusion matrix (rows: true label, columns: predicted)",
                           "zh-CN": "混淆矩阵(行:真实标签,列:预测标签)"},
    "finetune.per_label": {"en": "Per-label precision and recall", "zh-CN": "各标签的精确率和召回率"},
    "finetune.mistakes": {"en": "Misclassified held-out examples, worst first", "zh-CN": "分错的留出样本,错得最多的在前"},
    "finetune.tab_lm": {"en": "Language model", "zh-CN": "语言模型"},
    "finetune.lm_intro": {
        "en": "**LoRA fine-tuning of a language model** on a text: small adapters beside the attention weights learn "
              "from random windows of the text; the perplexity on held-out text (its last 10%) and a greedy sample "
              "from the same prompt are shown before and after. The adapters are merged into the model, which "
              "appears in the **Text generation** tab.",
        "zh-CN": "在一段文本上对**语言模型做 LoRA 微调**:注意力权重旁边的小型适配器从文本中随机截取的窗口里学习;"
                 "微调前后都会显示留出文本(最后 10%)上的困惑度,以及从同一个提示贪心解码生成的样本。"
                 "适配器最后合并进模型,模型会出现在**文本生成**标签页里。",
    },
    "finetune.lm_text": {"en": "Text to fine-tune on", "zh-CN": "用来微调的文本"},
    "finetune.lm_upload": {"en": "…or a text file", "zh-CN": "……或者一个文本文件"},
    "finetune.lora_rank": {"en": "LoRA rank", "zh-CN": "LoRA 秩"},
    "finetune.steps": {"en": "Steps", "zh-CN": "步数"},
    "finetune.block_size": {"en": "Block size (tokens)", "zh-CN": "块长度(词元数)"},
    "finetune.lm_prompt": {"en": "Prompt for the samples", "zh-CN": "生成样本用的提示"},
    "finetune.lm_train": {"en": "Fine-tune the language model", "zh-CN": "微调语言模型"},
    "finetune.sample_before": {"en": "Sample before", "zh-CN": "微调前的样本"},
    "finetune.sample_after": {"en": "Sample after", "zh-CN": "微调后的样本"},
    "finetune.tab_qa": {"en": "QA reader", "zh-CN": "问答阅读器"},
    "finetune.qa_intro": {
        "en": "**An extractive reader**, as BERT was fine-tuned on SQuAD: a new head gives every token of "
              "`[CLS] question [SEP] context [SEP]` two scores, *the answer starts here* and *it ends here*, and the "
              "whole encoder is trained on where the answer really starts and ends. It can only point at words of "
              "the context: it never writes. Exact match and F1 on held-out questions are measured before training "
              "(the new head points anywhere) and after each epoch. The model appears in the **Question answering** "
              "tab's model list (and `/answer`).",
        "zh-CN": "**抽取式阅读器**,和 BERT 在 SQuAD 上的微调方式一样:新加的输出头给 "
                 "`[CLS] 问题 [SEP] 上下文 [SEP]` 中的每个词元打两个分数——*答案从这里开始*和*答案在这里结束*,"
                 "整个编码器按答案真正的起止位置来训练。它只能指向上下文里的词,从不自己写。"
                 "训练前(新的输出头随便指)和每轮之后都会在留出的问题上测量精确匹配率和 F1。"
                 "模型会出现在**问答**标签页的模型列表(以及 `/answer`)里。",
    },
    "finetune.qa_table": {"en": "Training table (CSV: question, context, answer[, answer_start])",
                          "zh-CN": "训练集表格(CSV:question、context、answer[、answer_start])"},
    "finetune.qa_train": {"en": "Fine-tune the reader", "zh-CN": "微调阅读器"},
    "finetune.qa_examples": {"en": "Held-out questions: the reader's answers", "zh-CN": "留出的问题:阅读器的回答"},
}
