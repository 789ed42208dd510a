"""The only module that calls llama.cpp: model, context, KV cache, tokenizer, image encoder, sampler.

Everything here runs on the engine's single inference thread (see engine.py); nothing else may touch these
objects. llama_cpp is imported lazily so that importing app.core never needs it (Pyto cannot load it).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import EngineError, LoadCancelled
from app.core.inference.images import RGBImage

_log_lock = threading.Lock()
_quiet_callbacks: list[Any] = []  # ctypes callbacks must outlive every native call that may log


def default_threads() -> int:
    """Physical-core-ish thread count: llama.cpp is memory bound, hyperthreads rarely help."""
    count = os.cpu_count() or 2
    return count if count <= 4 else max(4, count // 2)


def use_extra_buffers(setting: bool | None, system_info: str) -> bool:
    """Whether llama.cpp may put the weights in its CPU "extra" buffer types (repacked layouts, AMX tiles).

    None decides: not where its CPU backend has AMX (Xeon Sapphire Rapids and later), because llama.cpp 0.3.36's
    AMX matrix multiply crashes there (a segfault in ggml_backend_amx_mul_mat on the first evaluation of a
    Q4_0 or Q4_K model of real size: llama.cpp issue 20824; stock llama-cpp-python crashes the same way). The
    weights then stay in plain CPU buffers, which every matrix kernel reads.
    """
    if setting is not None:
        return setting
    return "AMX_INT8 = 1" not in system_info


def _silence_native_logs() -> None:
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    with _log_lock:
        if _quiet_callbacks:
            return

        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
        def _ignore(level: int, text: bytes, user_data: Any) -> None:
            return None

        _quiet_callbacks.append(_ignore)
        llama_cpp.llama_log_set(_ignore, ctypes.c_void_p(0))
        for setter in ("mtmd_helper_log_set", "mtmd_log_set"):
            fn = getattr(mtmd, setter, None)
            if fn is not None:
                fn(_ignore, ctypes.c_void_p(0))


@dataclass
class ImageChunk:
    """An mtmd image chunk we own (a copy), and its size in the text model's positions."""

    handle: int
    n_tokens: int
    n_pos: int


class NativeModel:
    """A loaded text model + optional vision projector, one llama context with one sequence."""

    def __init__(
        self,
        text_path: Path,
        mmproj_path: Path | None,
        *,
        n_ctx: int,
        n_batch: int,
        n_threads: int,
        image_max_tokens: int | None = None,
        n_gpu_layers: int,
        flash_attn: bool | None = None,
        extra_buffers: bool | None = None,
        verbose: bool = False,
        load_progress: Callable[[float], bool | None] | None = None,
    ) -> None:
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        self._ll = llama_cpp
        self._mtmd = mtmd
        if not verbose:
            _silence_native_logs()
        llama_cpp.llama_backend_init()

        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = n_gpu_layers
        model_params.use_extra_bufts = use_extra_buffers(extra_buffers, llama_cpp.llama_print_system_info().decode())
        aborted = [False]
        if load_progress is not None:

            def report(fraction: float, _user_data: Any) -> bool:
                # False from the caller aborts the load: llama.cpp stops reading and returns no model.
                keep_going = load_progress(float(fraction)) is not False
                aborted[0] = not keep_going
                return keep_going

            # Kept on self: llama.cpp calls it during loading, so it must outlive this frame.
            self._progress_callback = llama_cpp.llama_progress_callback(report)
            model_params.progress_callback = self._progress_callback
        self.model = llama_cpp.llama_model_load_from_file(str(text_path).encode(), model_params)
        if not self.model:
            if aborted[0]:
                raise LoadCancelled(f"{text_path}: the load was cancelled")
            raise EngineError(f"{text_path}: llama.cpp could not load this model (see --verbose for details)")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_embd_inp = llama_cpp.llama_model_n_embd_inp(self.model)

        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = n_ctx
        ctx_params.n_batch = n_batch
        ctx_params.n_ubatch = n_batch
        # Sequence 0 is the conversation; sequence 1 only ever holds a stash of it while a one-off question
        # (a watch) borrows sequence 0 (`stash`/`unstash`). One unified cache: copying a sequence between the two
        # is bookkeeping on shared cells, and the conversation keeps the whole n_ctx.
        ctx_params.n_seq_max = 2
        ctx_params.kv_unified = True
        ctx_params.n_threads = n_threads
        ctx_params.n_threads_batch = n_threads
        if flash_attn is None:
            # Measured on a 2-core CPU with TinyLlama: flash attention (or llama.cpp's "auto") decodes 8-25%
            # slower than without; on a GPU (Metal, CUDA) it is the faster path.
            flash_attn = bool(llama_cpp.llama_supports_gpu_offload()) and n_gpu_layers != 0
        ctx_params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self.ctx = llama_cpp.llama_init_from_model(self.model, ctx_params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise EngineError(f"llama.cpp could not create a context of {n_ctx} tokens (out of memory?)")
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        # llama.cpp may round n_ctx up and clamp n_batch to the requested context: use what it chose.
        self.n_batch = min(llama_cpp.llama_n_batch(self.ctx), llama_cpp.llama_n_ubatch(self.ctx))
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)

        self.mctx: Any = None
        if mmproj_path is not None:
            params = mtmd.mtmd_context_params_default()
            params.use_gpu = n_gpu_layers != 0
            params.n_threads = n_threads
            params.print_timings = False
            if image_max_tokens:
                params.image_max_tokens = image_max_tokens  # dynamic-resolution projectors (families.py)
            self.mctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), self.model, params)
            if not self.mctx:
                self.close()
                raise EngineError(f"{mmproj_path}: llama.cpp could not load this vision projector")
            if not mtmd.mtmd_support_vision(self.mctx):
                self.close()
                raise EngineError(f"{mmproj_path}: this projector has no vision encoder")
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

    # --- vocabulary -------------------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Tokenize with special tokens parsed; BOS is prepended here, as mtmd does, not by llama_tokenize."""
        data = text.encode("utf-8")
        tokens: list[int] = [self.bos] if add_bos and self.add_bos else []
        if not data:
            return tokens
        capacity = len(data) + 8
        buffer = (self._ll.llama_token * capacity)()
        n = self._ll.llama_tokenize(self.vocab, data, len(data), buffer, capacity, False, True)
        if n < 0:
            capacity = -n
            buffer = (self._ll.llama_token * capacity)()
            n = self._ll.llama_tokenize(self.vocab, data, len(data), buffer, capacity, False, True)
        if n < 0:
            raise EngineError("tokenization failed")
        tokens.extend(buffer[:n])
        return tokens

    def piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self.vocab, token, buffer, -n, 0, False)
        return buffer.raw[:n]

    def token_text(self, token: int) -> str:
        """The token's text with special tokens rendered (for building stop lists)."""
        buffer = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self.vocab, token, buffer, 64, 0, True)
        return buffer.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self._ll.llama_vocab_is_eog(self.vocab, token))

    @property
    def eos_text(self) -> str:
        return self.token_text(self._ll.llama_vocab_eos(self.vocab))

    @property
    def bos_text(self) -> str:
        return self.token_text(self.bos)

    # --- images -----------------------------------------------------------------------------------------------

    def image_chunks(self, text_with_marker: str, image: RGBImage) -> list[int | ImageChunk]:
        """Tokenize `text + marker` with mtmd: text tokens, then the image chunk (plus any wrapper tokens).

        mtmd decides how a model wraps an image (LLaVA: no wrapper tokens); we keep its output as is.
        """
        mtmd = self._mtmd
        if self.mctx is None:
            raise EngineError("this model has no vision projector (mmproj): it cannot look at images")
        pixels = (ctypes.c_uint8 * len(image.pixels)).from_buffer_copy(image.pixels)
        bitmap = mtmd.mtmd_bitmap_init(image.width, image.height, pixels)
        if not bitmap:
            raise EngineError("mtmd could not take the image")
        chunks = mtmd.mtmd_input_chunks_init()
        units: list[int | ImageChunk] = []
        try:
            mtmd.mtmd_bitmap_set_id(bitmap, image.digest.encode())
            data = text_with_marker.encode("utf-8")
            text = mtmd.mtmd_input_text()
            text.text = data
            text.text_len = len(data)
            text.add_special = False
            text.parse_special = True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            result = mtmd.mtmd_tokenize(self.mctx, chunks, ctypes.byref(text), bitmaps, 1)
            if result != 0:
                raise EngineError(f"mtmd could not tokenize the prompt with the image (code {result})")
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                kind = mtmd.mtmd_input_chunk_get_type(chunk)
                if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    units.extend(ptr[j] for j in range(count.value))
                else:
                    owned = mtmd.mtmd_input_chunk_copy(chunk)
                    units.append(
                        ImageChunk(
                            owned,
                            mtmd.mtmd_input_chunk_get_n_tokens(owned),
                            mtmd.mtmd_input_chunk_get_n_pos(owned),
                        )
                    )
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)
        return units

    def free_chunk(self, chunk: ImageChunk) -> None:
        self._mtmd.mtmd_input_chunk_free(chunk.handle)

    def encode_image(self, chunk: ImageChunk) -> Any:
        """Run the vision encoder + projector; returns a float32 array (n_tokens, n_embd) we own."""
        import numpy as np

        result = self._mtmd.mtmd_encode_chunk(self.mctx, chunk.handle)
        if result != 0:
            raise EngineError(f"the vision encoder failed on this image (code {result})")
        ptr = self._mtmd.mtmd_get_output_embd(self.mctx)
        count = chunk.n_tokens * self.n_embd_inp
        view = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(count,))
        return view.copy().reshape(chunk.n_tokens, self.n_embd_inp)

    def decode_image(self, chunk: ImageChunk, embedding: Any, n_past: int) -> int:
        """Feed encoded image embeddings into the KV cache at `n_past`; returns the new n_past."""
        new_n_past = self._ll.llama_pos(0)
        ptr = embedding.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        result = self._mtmd.mtmd_helper_decode_image_chunk(
            self.mctx,
            self.ctx,
            chunk.handle,
            ptr,
            n_past,
            0,
            self.n_batch,
            ctypes.byref(new_n_past),
            self._mtmd.mtmd_helper_post_decode_callback(),  # a NULL callback
            None,
        )
        if result != 0:
            raise EngineError(f"llama.cpp could not take the image embeddings (code {result})")
        return int(new_n_past.value)

    # --- KV cache -----------------------------------------------------------------------------------------------

    def decode_tokens(self, tokens: Sequence[int], n_past: int, *, logits_last: bool) -> int:
        """Evaluate `tokens` at positions n_past.. in batches of n_batch; returns the new n_past."""
        batch = self._batch
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            last_part = start + self.n_batch >= len(tokens)
            batch.n_tokens = len(part)
            for i, token in enumerate(part):
                batch.token[i] = token
                batch.pos[i] = n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = bool(logits_last and last_part and i == len(part) - 1)
            result = self._ll.llama_decode(self.ctx, batch)
            if result != 0:
                raise EngineError(f"llama.cpp failed to evaluate the prompt (code {result})")
            n_past += len(part)
        return n_past

    def truncate(self, n_pos: int) -> bool:
        """Drop KV entries from position `n_pos` on; False when the cache cannot do partial removal."""
        return bool(self._ll.llama_memory_seq_rm(self.memory, 0, n_pos, -1))

    def clear(self) -> None:
        self._ll.llama_memory_clear(self.memory, True)

    @property
    def can_truncate(self) -> bool:
        """Whether the cache can be cut back to any position: not for recurrent or hybrid models (LFM2, Qwen3.5),
        whose recurrent state holds only the latest position (a partial llama_memory_seq_rm fails)."""
        ll = self._ll
        return not (ll.llama_model_is_recurrent(self.model) or ll.llama_model_is_hybrid(self.model))

    @property
    def has_sliding_window(self) -> bool:
        return int(self._ll.llama_model_n_swa(self.model)) > 0

    def save_state(self) -> bytes:
        """The sequence's whole state (KV cells and recurrent state), to restore with `load_state`."""
        size = self._ll.llama_state_seq_get_size(self.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = self._ll.llama_state_seq_get_data(self.ctx, buffer, size, 0)
        if written == 0:
            raise EngineError("llama.cpp could not save the conversation's state")
        return bytes(buffer)[:written]

    def load_state(self, state: bytes) -> bool:
        """Replace the sequence's state with one from `save_state`; False when llama.cpp refuses it."""
        self.clear()
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        return bool(self._ll.llama_state_seq_set_data(self.ctx, buffer, len(state), 0))

    def stash(self) -> None:
        """Keep what sequence 0 holds in sequence 1 (shared cells, no copy) so sequence 0 can be used and put back."""
        self._ll.llama_memory_seq_rm(self.memory, 1, -1, -1)
        self._ll.llama_memory_seq_cp(self.memory, 0, 1, -1, -1)

    def unstash(self) -> None:
        """Sequence 0 holds again exactly what it held at `stash`; the stash is dropped."""
        self._ll.llama_memory_seq_rm(self.memory, 0, -1, -1)
        self._ll.llama_memory_seq_cp(self.memory, 1, 0, -1, -1)
        self._ll.llama_memory_seq_rm(self.memory, 1, -1, -1)

    # --- sampling -----------------------------------------------------------------------------------------------

    def make_sampler(
        self,
        *,
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        repeat_penalty: float,
        seed: int | None,
        ignore_eos: bool = False,
        grammar: str | None = None,
    ) -> Any:
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if grammar is not None:
            # GBNF: only tokens that keep the text inside the grammar can be chosen; once it is complete, only EOS.
            constraint = ll.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not constraint:
                ll.llama_sampler_free(chain)
                raise EngineError("the answer's grammar could not be parsed")
            ll.llama_sampler_chain_add(chain, constraint)
        if ignore_eos:
            banned = self._end_of_generation_tokens()
            biases = (ll.llama_logit_bias * len(banned))()
            for i, token in enumerate(banned):
                biases[i].token = token
                biases[i].bias = float("-inf")
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_logit_bias(self.n_vocab, len(banned), biases))
        if temperature <= 0:
            # Plain greedy: the argmax of the logits, nothing that could reorder them.
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        if repeat_penalty != 1.0:
            ll.llama_sampler_chain_add(
                chain, ll.llama_sampler_init_penalties(self.n_vocab, 64, repeat_penalty, 0.0, 0.0)
            )
        if top_k > 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(top_k))
        if 0.0 < top_p < 1.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(top_p, 1))
        if min_p > 0.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(min_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(temperature))
        chosen_seed = ll.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFFFFFF
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(chosen_seed))
        return chain

    def _end_of_generation_tokens(self) -> list[int]:
        cached = getattr(self, "_eog_tokens", None)
        if cached is None:
            is_eog = self._ll.llama_vocab_is_eog
            cached = [t for t in range(self.n_vocab) if is_eog(self.vocab, t)]
            self._eog_tokens = cached
        return cached

    def sample(self, sampler: Any) -> int:
        """Sample from the logits of the last evaluated token (and let the sampler remember it)."""
        return int(self._ll.llama_sampler_sample(sampler, self.ctx, -1))

    def free_sampler(self, sampler: Any) -> None:
        self._ll.llama_sampler_free(sampler)

    def close(self) -> None:
        ll = self._ll
        if getattr(self, "mctx", None):
            self._mtmd.mtmd_free(self.mctx)
            self.mctx = None
        if getattr(self, "_batch", None) is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "ctx", None):
            ll.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            ll.llama_model_free(self.model)
            self.model = None
