"""One decoding step of a Llama-type model (SmolLM2, Llama, Mistral-style GQA) in plain torch, for the engine's
batched decoder.

At batch 1 a decoding step reads every weight once, so its floor is the weights' bytes over the memory bandwidth;
everything else is overhead. transformers' forward pass spends that overhead generously for one new token: separate
q, k and v products (three small matrix-vector products where one would do), a key/value cache that concatenates
its whole tensor at every step, the rotary table recomputed, the keys and values repeated for grouped-query
attention, and some forty Python-level modules per layer. This module does the same arithmetic with fewer, larger
operations, on the same weights:

- q, k and v in one product, gate and up in another (the fused weights are the model's own: its q/k/v and gate/up
  Linear layers become views into them at fp32, so nothing is stored twice);
- the cache is transformers' own ``DynamicCache`` (prefill, joins and trims still go through it), whose tensors here
  are views into one buffer for all layers' keys and one for their values, with room to grow, so a step writes one
  column instead of copying the cache (and a compiled step takes two tensors, not two per layer, to check);
- the rotary cosines and sines are a table computed once by the model's own rotary module (exactly its values);
- grouped-query attention without repeating keys: with one new token, the query heads that share a key/value head
  are that head's queries, so ``q`` is viewed as (batch, kv heads, group, head_dim) and attends over the cache as is.

It is used only for one-token steps of models whose configuration it can reproduce exactly (:func:`unsupported`
says why not otherwise); prefill, the next-token lens and every other model go through transformers. The logits
agree with transformers' to float32 rounding (tests/test_generation.py compares both, and greedy tokens are identical
on the benchmark's prompts).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .weights import INT4_GROUP, Int4Linear, OneDNNLinear, PackedLinear, pack_fused, share_fused, tensor_key

__all__ = ["LlamaDecoder", "unsupported"]

RECOMPILE_LIMIT = 64  # compiled graphs of _graph kept in one process (models loaded with --compile, two each)
QKV, GATE_UP = ("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")  # the layers each fused product joins
ROOM = 64  # cache columns added at a time when a buffer runs out (or its tensors were replaced by a join or a trim)
CHUNK = 4  # the rows per call of the compiled step that compile() measures against the whole batch


def unsupported(model: Any) -> str | None:
    """Why :class:`LlamaDecoder` cannot run ``model`` exactly, or None when it can."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in ("llama", "mistral"):
        return "not a Llama-type model"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "rotary_emb") or not hasattr(inner, "layers"):
        return "an unfamiliar module layout"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biases in attention or MLP"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act}"
    if getattr(config, "sliding_window", None):
        return "sliding-window attention"
    rope = getattr(config, "rope_scaling", None) or getattr(config, "rope_parameters", None) or {}
    if isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) == "dynamic":
        return "dynamic rotary scaling (its table depends on the sequence length)"
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if config.num_attention_heads * head_dim != config.hidden_size and head_dim is None:
        return "an unusual head size"
    if config.num_attention_heads % config.num_key_value_heads:
        return "query heads not a multiple of key/value heads"
    return None


def _fuse(linears: list[torch.nn.Module]) -> torch.nn.Linear:
    """One Linear whose output is the outputs of ``linears`` side by side. The originals become views into its
    weight (rows of an (out, in) matrix), so the model's own layers and the fused one share one copy."""
    weights = [lin.weight.detach() for lin in linears]
    data = torch.cat(weights, dim=0).contiguous()
    fused = torch.nn.Linear(data.shape[1], data.shape[0], bias=False, device=data.device, dtype=data.dtype)
    fused.weight = torch.nn.Parameter(data, requires_grad=False)
    start = 0
    for lin, w in zip(linears, weights):
        lin.weight = torch.nn.Parameter(data[start:start + w.shape[0]], requires_grad=False)
        start += w.shape[0]
    return fused


class LlamaDecoder:
    """The one-token step of a Llama-type ``model`` (see the module docstring). Build it on the model as loaded,
    before its Linear layers are converted (:func:`engine.weights.apply_weights`, :func:`~engine.weights.apply_onednn`);
    then call :meth:`use_weights` with the converted model so the step reads the same kind of layers."""

    def __init__(self, model: Any) -> None:
        config, inner = model.config, model.model
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.group = self.heads // self.kv_heads
        self.scale = self.head_dim ** -0.5
        self.eps = float(inner.norm.variance_epsilon)
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.model = model
        self.layers: list[dict[str, Any]] = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append({
                "norm1": layer.input_layernorm.weight, "norm2": layer.post_attention_layernorm.weight,
                "qkv": _fuse([attn.q_proj, attn.k_proj, attn.v_proj]),
                "gate_up": _fuse([mlp.gate_proj, mlp.up_proj]),
                "o": attn.o_proj, "down": mlp.down_proj})
        self.intermediate = self.layers[0]["down"].in_features
        # the rotary table, by the model's own module: (positions, head_dim) cosines and sines
        context = int(getattr(config, "max_position_embeddings", 2048))
        probe = torch.zeros(1, dtype=self.embed.dtype, device=self.embed.device)
        with torch.no_grad():
            cos, sin = inner.rotary_emb(probe, torch.arange(context, device=self.embed.device)[None])
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()
        self.lm_head: Callable[[torch.Tensor], torch.Tensor] = model.lm_head
        # keys and values of every layer, (B, layers, kv heads, room, head_dim) each, and the cache's tensors made views
        # into them at the last step (to see that no join, trim or prefill replaced them since)
        self._stack: tuple[torch.Tensor, torch.Tensor] | None = None
        self._views: list[torch.Tensor] = []
        self._compiled: Callable[..., torch.Tensor] | None = None
        self._inductor_config: dict[str, object] = {}  # what compile(mode) sets around each compiled call
        # the compiled step's rows at most per call (None: the whole batch at once): chosen by measuring at compile
        self.chunk: int | None = None

    def compile(self, mode: str = "default") -> float:
        """Compile the whole step (all layers) into one graph with torch.compile (inductor: fused C++ kernels, no
        per-operation Python), for batch 1 and for larger batches; returns the seconds it took. The first time on a
        machine this takes tens of seconds (inductor's cache on disk makes later loads faster); afterwards every
        step runs compiled. The batch size and the cache room are dynamic, so joins and growth do not recompile.

        ``mode="max-autotune"``: the weights are folded into the graph as constants (inductor's ``freezing``), and
        for each product inductor times its own C++ kernel (on the CPU: micro-kernels with the weights packed for
        them, int8 ones included) against ATen's and keeps the faster on this device. On the EPYC of bench/README.md
        SmolLM2's int8 products at batch 1 took 3.9 ms against 10.4 through torch's int8 kernel, and int8 decoding
        went from 63 to 163 tokens/s, fp32 from 34 to 80 (the step's fp32 products made plain Linear layers for
        it: :meth:`_plain_products`), int4 from 78 to 146 (bench/README.md, ninth pass). It costs 40 s to three
        minutes at load and a copy of the weights (the graph's constants beside the model's own, which the prefill
        uses)."""
        import time

        import torch._dynamo.config
        import torch._inductor.config  # noqa: F401 (patched around each compiled call in max-autotune)

        start = time.perf_counter()
        # every decoder compiles the same function (one code object), guarded on its own weights: each loaded model
        # adds entries (batch 1 and batch > 1), so the default limit of 8 runs out after a few models in one process
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        # static by default (the model's sizes stay constants); the batch and the cache's room are marked dynamic at
        # each call, so joins and growth reuse the graph (batch 1 is compiled apart: a size-1 dimension is special)
        # max-autotune's settings are inductor's global config, set around each call of the compiled graph (so that a
        # recompilation, when a buffer grows, is tuned too): neither torch.compile(options=...) nor a backend that
        # sets them around inductor's compile_fx applied them here (torch 2.13: the int8 step 11.5 ms, as without
        # them, against 6.2)
        self._inductor_config = {}
        if mode == "max-autotune":
            self._inductor_config = {"freezing": True, "max_autotune": True}
            if self.embed.device.type == "cpu":  # inductor's C++ templates against ATen (Triton is for GPUs)
                self._inductor_config["max_autotune_gemm_backends"] = "CPP,ATEN"
            self._plain_products()
        self._compiled = torch.compile(self._graph, fullgraph=True)
        with torch.inference_mode():
            for batch in (1, 2):  # batch 1 is compiled apart (a size-1 dimension is specialised)
                cache, ids, positions = self._prefilled(batch)
                for _ in range(2):
                    self.step(ids[:, 0], positions, None, cache)
                    positions = positions + 1
            # (on a GPU a batch is as cheap as a row, and a step's time would need synchronising to measure)
            self.chunk = self._measure_chunk(CHUNK, 2 * CHUNK) if self.embed.device.type == "cpu" else None
        self._stack, self._views = None, []
        return time.perf_counter() - start

    def _prefilled(self, batch: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """A cache of ``batch`` rows of two tokens through the model (a prefill), their ids (B, 2) and the next
        position of each row (B,): what compile() steps from to compile and to measure."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        ids = torch.zeros((batch, 2), dtype=torch.long, device=self.embed.device)
        self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        return cache, ids, torch.full((batch,), 2, device=self.embed.device)

    def _measure_chunk(self, chunk: int, batch: int, rounds: int = 3) -> int | None:
        """``chunk`` when a compiled step of ``batch`` rows runs faster as steps of ``chunk`` rows (by a tenth at
        least, the best of ``rounds`` each, measured here on this device), else None. inductor's int8 products are
        fast for a few rows and slow past them (SmolLM2 int8, max-autotune, on the EPYC of bench/README.md: a step of
        4 rows 10.3 ms, of 8 rows 30.8 ms, of 16 rows 55.6), so there a batch goes through the graph 4 rows at a time
        (8 rows 20.6 ms); on another CPU, or another precision, the whole batch may be faster."""
        import time

        cache, ids, positions = self._prefilled(batch)
        best = {None: float("inf"), chunk: float("inf")}
        for _ in range(rounds):
            for setting in best:
                self.chunk = setting
                begin = time.perf_counter()
                self.step(ids[:, 0], positions, None, cache)
                best[setting] = min(best[setting], time.perf_counter() - begin)
                positions = positions + 1  # (the compiled step attends over the buffers' whole room: as costly)
        return chunk if best[chunk] < 0.9 * best[None] else None

    def _plain_products(self) -> None:
        """The step's fp32 oneDNN layers as plain Linear layers on the same tensors, for max-autotune: an opaque
        oneDNN product is left out of inductor's tuning, while a plain one is timed as its C++ kernel against ATen's
        (oneDNN's packed product among them). SmolLM2's fp32 step at batch 1 on the EPYC of bench/README.md: 13-18 ms
        against 29.6 eager (and nothing gained in max-autotune with the opaque products). The model's own layers,
        which the prefill uses, stay oneDNN's."""
        for entry in self.layers:
            for name, layer in entry.items():
                if isinstance(layer, OneDNNLinear):
                    entry[name] = layer.plain()
        if isinstance(self.lm_head, OneDNNLinear):
            self.lm_head = self.lm_head.plain()

    def fused_layer_names(self) -> tuple[str, ...]:
        """The qualified names of the model's layers that the step's fused layers join (every layer's q/k/v and
        gate/up): :meth:`use_weights` converts them once, as parts of the fused layers, so
        :func:`~engine.weights.apply_weights` is told to skip them."""
        names = {id(module): name for name, module in self.model.named_modules()}
        return tuple(names[id(getattr(parent, n))] for layer in self.model.model.layers
                     for parent, group in ((layer.self_attn, QKV), (layer.mlp, GATE_UP)) for n in group)

    def use_weights(self, model: Any, convert: Callable[[torch.nn.Linear], torch.nn.Module] | None,
                    pack: bool = False) -> None:
        """After ``model``'s Linear layers were converted (``convert``: the layer type they became, e.g.
        :class:`~engine.weights.Int8Linear`, or None when they stayed as they were), all but those of
        :meth:`fused_layer_names` at a reduced precision: the fused layers converted the same way and the model's q/k/v
        and gate/up layers made their parts (:func:`~engine.weights.share_fused`, so that the converted weights are
        held once), the others (o, down, the output layer) taken from the model.

        ``pack`` (fp32 weights on the CPU, :func:`~engine.weights.packing_available`): every product of the step
        through weights packed once for oneDNN (:class:`~engine.weights.PackedLinear`) instead, and the model's
        own layers made to use the same packed tensors, so that nothing is stored twice: its q/k/v and gate/up
        layers become parts of the fused ones (:class:`~engine.weights.FusedPart`: transformers' prefill computes
        each fused product once and slices it), o and down are replaced by their packed form. The output layer
        gets a packed copy when it is the embedding table too (the table is still read a row at a time)."""
        if pack:
            self._pack(model)
            return
        with torch.no_grad():
            for entry, layer in zip(self.layers, model.model.layers):
                attn, mlp = layer.self_attn, layer.mlp
                for name, parent, names in (("qkv", attn, QKV), ("gate_up", mlp, GATE_UP)):
                    if convert is None or convert is Int4Linear and entry[name].in_features % INT4_GROUP:
                        continue  # the model's layers are still views into the fused weight
                    entry[name] = convert(entry[name])
                    if convert is not OneDNNLinear:  # (which reads the same tensor): the model's copies go
                        share_fused(entry[name], parent, names)
                entry["o"], entry["down"] = attn.o_proj, mlp.down_proj
        self.lm_head = model.lm_head

    def _pack(self, model: Any) -> None:
        with torch.no_grad():
            for entry, layer in zip(self.layers, model.model.layers):
                attn, mlp = layer.self_attn, layer.mlp
                entry["qkv"] = pack_fused(entry["qkv"], attn, QKV)
                entry["gate_up"] = pack_fused(entry["gate_up"], mlp, GATE_UP)
                attn.o_proj = entry["o"] = PackedLinear.from_linear(attn.o_proj)
                mlp.down_proj = entry["down"] = PackedLinear.from_linear(mlp.down_proj)
            head = model.lm_head
            self.lm_head = PackedLinear.from_linear(head)
            if head.weight.data_ptr() != self.embed.data_ptr():  # not tied: the model's own layer is packed too
                model.lm_head = self.lm_head

    def extra_nbytes(self, model: Any) -> int:
        """Bytes the step's own layers hold that ``model`` does not share: nothing but the packed copy of a tied
        output layer at fp32 (the fused layers are the model's own, whatever their form)."""
        def key(t: torch.Tensor) -> int:
            return t.untyped_storage().data_ptr() if t.layout == torch.strided else tensor_key(t)

        shared = {key(t) for t in [*model.parameters(), *model.buffers()]}
        total = 0
        modules = [entry[name] for entry in self.layers for name in ("qkv", "gate_up")]
        if isinstance(self.lm_head, torch.nn.Module):
            modules.append(self.lm_head)
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                if key(t) not in shared:
                    shared.add(key(t))
                    total += t.numel() * t.element_size()
        return total

    def _stacked(self, layers: list[Any], batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The key and value buffers of all layers, with room for column ``length``: the ones of the last step while
        the cache's tensors are still the views made then, else new ones with the cache copied in (after a prefill,
        a join, a trim or a row leaving replaced them, or when the room ran out)."""
        if (self._stack is not None and self._stack[0].shape[0] == batch and self._stack[0].shape[3] > length
                and len(self._views) == 2 * len(layers)
                and all(layer.keys is k and layer.values is v
                        for layer, k, v in zip(layers, self._views[::2], self._views[1::2]))):
            return self._stack
        first = layers[0].keys
        room = length + max(ROOM, length // 2)
        # zeros, not garbage: the compiled step reads the unused columns too (masked: 0 * a NaN would still be NaN)
        kb = first.new_zeros((batch, len(layers), first.shape[1], room, first.shape[3]))
        vb = torch.zeros_like(kb)
        for i, layer in enumerate(layers):
            kb[:, i, :, :length].copy_(layer.keys)
            vb[:, i, :, :length].copy_(layer.values)
        self._stack = (kb, vb)
        return self._stack

    def step(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None, cache: Any) -> torch.Tensor:
        """One new token per row: ``ids`` (B,), ``positions`` (B,) their positions, ``mask`` (B, L + 1) with the new
        column (None when no row has padding), ``cache`` the DynamicCache of the L tokens before. Writes this token's
        keys and values into the cache; returns the next-token logits (B, V) in float32."""
        layers = cache.layers
        batch, length = ids.shape[0], layers[0].keys.shape[2]
        kb, vb = self._stacked(layers, batch, length)
        if self._compiled is not None and self.chunk and batch > self.chunk:  # (see _measure_chunk)
            parts = [slice(i, i + self.chunk) for i in range(0, batch, self.chunk)]
            outputs = [self._step_compiled(ids[rows], positions[rows], None if mask is None else mask[rows], length,
                                           kb[rows], vb[rows]) for rows in parts]
            logits, new_keys, new_values = (torch.cat(pieces) for pieces in zip(*outputs))
        elif self._compiled is not None:
            logits, new_keys, new_values = self._step_compiled(ids, positions, mask, length, kb, vb)
        else:  # the columns written so far; padding columns get -inf (a row's own new column is never padding)
            bias = None if mask is None else torch.zeros((batch, length), dtype=self.cos.dtype, device=mask.device
                                                          ).masked_fill_(mask[:, :length] == 0, float("-inf"))
            logits, new_keys, new_values = self._graph(ids, positions, None if bias is None else bias[:, None, None],
                                                       kb.narrow(3, 0, length), vb.narrow(3, 0, length))
        column = torch.tensor([length], device=ids.device)
        kb.index_copy_(3, column, new_keys)
        vb.index_copy_(3, column, new_values)
        views = self._views = []  # (B, kv, length + 1, D) each; unbind makes them all in one call (select: 60 us)
        for layer, k, v in zip(layers, kb.narrow(3, 0, length + 1).unbind(1), vb.narrow(3, 0, length + 1).unbind(1)):
            layer.keys, layer.values = k, v
            views += (k, v)
        return logits

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """transformers' LlamaRMSNorm: the same operations in the same order (torch's fused rms_norm took 25 us a
        call on the CPU here, these four 7)."""
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _step_compiled(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None, length: int,
                       keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_graph` compiled: it attends over the buffers' whole room, the columns from ``length`` on and the
        padding masked out, so that the graph's shapes change only when the buffers grow."""
        batch, room = ids.shape[0], keys.shape[3]
        bias = torch.full((batch, room), float("-inf"), dtype=self.cos.dtype, device=ids.device)
        bias[:, :length] = 0.0
        if mask is not None:
            bias[:, :length].masked_fill_(mask[:, :length] == 0, float("-inf"))
        # fresh copies: a view of another tensor (even of size 1) may carry a stride the graph would specialise on
        fresh = torch.contiguous_format
        ids, positions = ids.clone(memory_format=fresh), positions.clone(memory_format=fresh)
        bias = bias[:, None, None, :]
        for t in (bias, keys, values):  # the room (a chunk's rows are a new view each time: marked at every call)
            torch._dynamo.maybe_mark_dynamic(t, 3)
        if batch > 1:  # (batch 1 has its own graph: a size-1 dimension is specialised)
            for t in (ids, positions, bias, keys, values):
                torch._dynamo.maybe_mark_dynamic(t, 0)
        tuning = torch._inductor.config.patch(self._inductor_config) if self._inductor_config else nullcontext()
        with tuning:  # (only max-autotune patches anything: 11 us a step otherwise spent on an empty patch)
            return self._compiled(ids, positions, bias, keys, values)

    def _graph(self, ids: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor | None, keys: torch.Tensor,
               values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step's arithmetic as one function of tensors (what :meth:`compile` compiles): attends over the columns
        of every layer's ``keys`` and ``values`` (B, layers, kv, columns, D), ``bias`` (B, 1, 1, columns) or None
        masking what a row must not see, and over this token's own key and value; returns the logits (B, V) and this
        token's keys and values (B, layers, kv, 1, D), which :meth:`step` writes into the buffers. (The graph writes
        nothing: written in place, views of one buffer made inductor copy it at every step.)

        Compiled, attention is written as products and sums (``(q * k).sum(-1)``), which inductor fuses with the
        softmax into a few C++ loops; as matrix products it called ATen's bmm twice a layer, 18 us each for these
        small shapes (SmolLM2 int8 step, batch 1, 100 tokens: 6.8 -> 6.2 ms; batch 4: 12.3 -> 10.5 ms). Eager, the
        same sums would materialise (B, kv, group, columns, D) products, so there it stays matrix products."""
        batch, (heads, kv, d, group) = ids.shape[0], (self.heads, self.kv_heads, self.head_dim, self.group)
        half, inter = d // 2, self.intermediate
        compiling = torch.compiler.is_compiling()
        cos = self.cos[positions][:, None, :]  # (B, 1, D): the same for every head
        sin = self.sin[positions][:, None, :]
        h = F.embedding(ids, self.embed)  # (B, hidden), the residual stream
        new_keys, new_values = [], []
        for i, e in enumerate(self.layers):
            kb, vb = keys.select(1, i), values.select(1, i)  # (B, kv, columns, D)
            qkv = e["qkv"](self._rms_norm(h, e["norm1"])).view(batch, heads + 2 * kv, d)
            qk = qkv[:, :heads + kv]  # rotary position on the queries and keys together
            qk = qk * cos + torch.cat([-qk[..., half:], qk[..., :half]], dim=-1) * sin
            k, v = qk[:, heads:], qkv[:, heads + kv:]  # (B, kv, D)
            new_keys.append(k)
            new_values.append(v)
            q = qk[:, :heads].reshape(batch, kv, group, d)  # the query heads of each key/value head, side by side
            if compiling:
                scores = (q[:, :, :, None, :] * kb[:, :, None]).sum(-1) * self.scale  # (B, kv, group, columns)
            else:
                scores = torch.matmul(q, kb.transpose(2, 3)) * self.scale
            if bias is not None:
                scores = scores + bias
            own = (q * k[:, :, None]).sum(-1, keepdim=True) * self.scale  # (B, kv, group, 1): this token's key
            p = torch.softmax(torch.cat([scores, own], dim=-1), dim=-1)
            seen, p_own = p[..., :-1], p[..., -1:]
            a = (seen[..., None] * vb[:, :, None]).sum(-2) if compiling else torch.matmul(seen, vb)
            a = a + p_own * v[:, :, None]  # (B, kv, group, D)
            h = h + e["o"](a.reshape(batch, heads * d))
            gate_up = e["gate_up"](self._rms_norm(h, e["norm2"]))
            h = h + e["down"](F.silu(gate_up[:, :inter]) * gate_up[:, inter:])
        logits = self.lm_head(self._rms_norm(h, self.norm)).float()
        return logits, torch.stack(new_keys, dim=1)[:, :, :, None], torch.stack(new_values, dim=1)[:, :, :, None]
