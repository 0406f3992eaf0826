#!/usr/bin/env python3
"""Print llama.cpp's token ids for every case of a corpus, as JSON: the tokenizer oracle.

Usage: tokenize.py MODEL.gguf CORPUS [--out FILE]

CORPUS is either JSON Lines (one object per line with "id" and "text", or a bare JSON string) or
plain text (one case per line, without its newline). The model is loaded vocab-only through
llama-cpp-python's low-level API (llama.cpp's C functions), so this is llama.cpp's tokenizer, not a
Python reimplementation. For every case the output holds three id lists:

  plain    llama_tokenize(add_special=False, parse_special=False)
  parsed   llama_tokenize(add_special=False, parse_special=True)
  full     llama_tokenize(add_special=True,  parse_special=True)

plus vocabulary facts (bos/eos/eot/pad, add_bos/add_eos, the end-of-generation set, non-normal
token attributes, a hash of every token's piece) and, for the chat cases, the prompt that
llama_chat_apply_template renders with the model's own template.
"""

import argparse
import ctypes
import hashlib
import json
import os
import sys

import llama_cpp

CHAT_CASES = [
    {"name": "system_user", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France?"}]},
    {"name": "user_only", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Write a Python function that adds two numbers."}]},
    {"name": "multi_turn", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Colour of the sky?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "And grass? ünïcödé ✓"}]},
    {"name": "no_generation_prompt", "add_generation_prompt": False, "messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"}]},
]


_QUIET = None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_corpus(path):
    cases = []
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".jsonl"):
        for n, line in enumerate(raw.decode("utf-8").split("\n")):
            if not line.strip():
                continue
            obj = json.loads(line)
            if isinstance(obj, str):
                cases.append({"id": str(n), "text": obj})
            else:
                cases.append({"id": str(obj["id"]), "text": obj["text"]})
    else:
        for n, line in enumerate(raw.decode("utf-8").split("\n")):
            cases.append({"id": str(n), "text": line})
    return cases, hashlib.sha256(raw).hexdigest()


def tokenize(vocab, text, add_special, parse_special):
    data = text.encode("utf-8")
    n_max = len(data) + 16
    while True:
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n >= 0:
            return [int(buf[i]) for i in range(n)]
        n_max = -n


def piece(vocab, token):
    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, True)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def detokenize(vocab, ids):
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 64 + 16 * len(ids)
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, True)
        if n >= 0:
            return buf.raw[:n].decode("utf-8", errors="replace")
        size = -n


def chat_render(model, case):
    tmpl = llama_cpp.llama_model_chat_template(model, None)
    if not tmpl:
        return None
    msgs = case["messages"]
    keep = [(m["role"].encode("utf-8"), m["content"].encode("utf-8")) for m in msgs]
    arr = (llama_cpp.llama_chat_message * len(msgs))()
    for i, (role, content) in enumerate(keep):
        arr[i].role = role
        arr[i].content = content
    size = 4096
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(tmpl, arr, len(msgs), case["add_generation_prompt"], buf, size)
        if n < 0:
            return None
        if n <= size:
            return buf.raw[:n].decode("utf-8")
        size = n


def to_json(result):
    """Diff-friendly JSON: one line per case, per chat case and per top-level field."""
    def one(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    lines = ["{"]
    keys = list(result)
    for i, k in enumerate(keys):
        comma = "," if i + 1 < len(keys) else ""
        v = result[k]
        if k in ("cases", "chat"):
            lines.append(f" {one(k)}: [")
            lines.extend(f"  {one(c)}" + ("," if j + 1 < len(v) else "") for j, c in enumerate(v))
            lines.append(f" ]{comma}")
        else:
            lines.append(f" {one(k)}: {one(v)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("corpus")
    ap.add_argument("--out", help="write the JSON here instead of stdout")
    args = ap.parse_args()

    cases, corpus_sha = read_corpus(args.corpus)

    global _QUIET  # the callback must outlive every llama.cpp call
    _QUIET = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(args.model.encode("utf-8"), params)
    if not model:
        sys.exit(f"llama.cpp could not load {args.model}")
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)

    def tok_or_none(t):
        return None if t < 0 else int(t)

    attrs = {}
    eog = []
    pieces = hashlib.sha256()
    for t in range(n_vocab):
        a = int(llama_cpp.llama_vocab_get_attr(vocab, t))
        if a != 4:  # LLAMA_TOKEN_ATTR_NORMAL
            attrs[str(t)] = a
        if llama_cpp.llama_vocab_is_eog(vocab, t):
            eog.append(t)
        p = piece(vocab, t)
        pieces.update(len(p).to_bytes(4, "little"))
        pieces.update(p)

    out_cases = []
    for c in cases:
        text = c["text"]
        plain = tokenize(vocab, text, False, False)
        parsed = tokenize(vocab, text, False, True)
        full = tokenize(vocab, text, True, True)
        out_cases.append({
            "id": c["id"],
            "text": text,
            "plain": plain,
            "parsed": parsed,
            "full": full,
            "detokenized": detokenize(vocab, parsed),
        })

    chats = []
    for case in CHAT_CASES:
        rendered = chat_render(model, case)
        ids = None if rendered is None else tokenize(vocab, rendered, True, True)
        chats.append({**case, "rendered": rendered, "ids": ids})

    tmpl = llama_cpp.llama_model_chat_template(model, None)
    result = {
        "generator": "bench/llama_peer/tokenize.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "model_file": os.path.basename(args.model),
        "model_sha256": sha256_file(args.model),
        "corpus_sha256": corpus_sha,
        "vocab": {
            "n_vocab": int(n_vocab),
            "bos": tok_or_none(llama_cpp.llama_vocab_bos(vocab)),
            "eos": tok_or_none(llama_cpp.llama_vocab_eos(vocab)),
            "eot": tok_or_none(llama_cpp.llama_vocab_eot(vocab)),
            "pad": tok_or_none(llama_cpp.llama_vocab_pad(vocab)),
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
            "eog": eog,
            "attrs": attrs,
            "pieces_sha256": pieces.hexdigest(),
            "has_chat_template": bool(tmpl),
        },
        "chat": chats,
        "cases": out_cases,
    }
    text = to_json(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    main()
