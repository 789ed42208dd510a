"""An independent from-scratch evaluation of a token history, written straight against llama.cpp.

It shares no code with app.core.inference.engine: token runs go through their own batches, each image chunk through
llama.cpp's own `mtmd_helper_eval_chunk_single` (encode + decode in one call), and the next token is the
argmax of the logits computed with numpy. Tests compare the engine's incremental, cache-reusing turns with it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def greedy_from_scratch(
    text_model: Path,
    mmproj: Path | None,
    history: Sequence[int | str],
    images: Mapping[str, Image.Image],
    n_tokens: int,
    *,
    n_ctx: int = 4096,
    n_batch: int = 512,
    image_max_tokens: int | None = None,
) -> list[int]:
    """Evaluate `history` (token ids and "image:<digest>") in a fresh context; greedy-generate `n_tokens`.

    Generation stops early at an end-of-generation token, which is not returned.
    """
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(str(text_model).encode(), llama_cpp.llama_model_default_params())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    # The engine's numerics on a CPU: no flash attention, two threads (random weights leave near-ties in the
    # logits that another summation order can flip; the comparison is about which tokens were evaluated where).
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.n_threads = params.n_threads_batch = 2
    ctx = llama_cpp.llama_init_from_model(model, params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    mctx = None
    if mmproj is not None:
        mparams = mtmd.mtmd_context_params_default()
        mparams.print_timings = False
        mparams.n_threads = 2
        if image_max_tokens:
            mparams.image_max_tokens = image_max_tokens  # as the engine was told (a different cap, other tokens)
        mctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), model, mparams)
    n_past = 0

    def decode(tokens: list[int]) -> None:
        # Positions are given, not left to llama.cpp: after an M-RoPE image (Qwen-VL) the next text position is
        # mtmd's n_past (the image advances it by its grid's larger side, not by its token count), while the
        # cache's own "last position + 1" would follow the image's temporal position only.
        nonlocal n_past
        for start in range(0, len(tokens), n_batch):
            part = tokens[start : start + n_batch]
            batch = llama_cpp.llama_batch_init(len(part), 0, 1)
            try:
                batch.n_tokens = len(part)
                for i, token in enumerate(part):
                    batch.token[i] = token
                    batch.pos[i] = n_past + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = i == len(part) - 1
                assert llama_cpp.llama_decode(ctx, batch) == 0
            finally:
                llama_cpp.llama_batch_free(batch)
            n_past += len(part)

    # An image can be several mtmd chunks (idefics3, LFM2 and MiniCPM-V tile a large frame, with wrapper tokens
    # between the tiles): the history then holds one "image:<digest>" per chunk, and its wrapper tokens as ids.
    # mtmd tokenizes each image once here; its image chunks are evaluated in order as their units come.
    image_chunks: dict[str, tuple[object, list[object]]] = {}
    next_chunk: dict[str, int] = {}

    def chunks_of(digest: str) -> list[object]:
        if digest not in image_chunks:
            rgb = images[digest].convert("RGB")
            data = rgb.tobytes()
            pixels = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            bitmap = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, pixels)
            chunks = mtmd.mtmd_input_chunks_init()
            marker = mtmd.mtmd_default_marker()
            text = mtmd.mtmd_input_text()
            text.text = marker
            text.text_len = len(marker)
            text.add_special = False
            text.parse_special = True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            assert mtmd.mtmd_tokenize(mctx, chunks, ctypes.byref(text), bitmaps, 1) == 0
            mtmd.mtmd_bitmap_free(bitmap)
            found = []
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    found.append(chunk)
            image_chunks[digest] = (chunks, found)
            next_chunk[digest] = 0
        return image_chunks[digest][1]

    def eval_image(digest: str) -> None:
        nonlocal n_past
        found = chunks_of(digest)
        chunk = found[next_chunk[digest] % len(found)]
        next_chunk[digest] += 1
        new_n_past = llama_cpp.llama_pos(0)
        assert (
            mtmd.mtmd_helper_eval_chunk_single(mctx, ctx, chunk, n_past, 0, n_batch, False, ctypes.byref(new_n_past))
            == 0
        )
        n_past = new_n_past.value

    try:
        run: list[int] = []
        for unit in history:
            if isinstance(unit, int):
                run.append(unit)
                continue
            if run:
                decode(run)
                run = []
            eval_image(unit.removeprefix("image:"))
        if run:
            decode(run)
        generated: list[int] = []
        for step in range(n_tokens):
            logits = llama_cpp.llama_get_logits_ith(ctx, -1)
            row = np.ctypeslib.as_array(logits, shape=(n_vocab,))
            token = int(np.argmax(row))
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            generated.append(token)
            if step + 1 < n_tokens:
                decode([token])
        return generated
    finally:
        for chunks, _found in image_chunks.values():
            mtmd.mtmd_input_chunks_free(chunks)
        if mctx is not None:
            mtmd.mtmd_free(mctx)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
