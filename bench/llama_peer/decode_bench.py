#!/usr/bin/env python3
"""llama.cpp side of the speed comparison: the same GGUF, the same prompt ids, the same thread
count, greedy decode ignoring end-of-sequence; median of runs.

Usage: decode_bench.py MODEL.gguf NMK_BENCH.json THREADS
NMK_BENCH.json is `nmk bench --json` output (its prompt_ids, gen_tokens and runs are reused).
Prints one JSON object.
"""
import json
import statistics
import sys
import time

import llama_cpp
import numpy as np


def main():
    model, report_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    report = json.load(open(report_path))
    ids = report["prompt_ids"]
    n_gen = report["gen_tokens"]
    runs = report["runs"]
    llm = llama_cpp.Llama(model_path=model, n_ctx=max(512, len(ids) + n_gen + 8), n_batch=512,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    n_vocab = llm.n_vocab()
    prefill, decode = [], []
    for i in range(runs + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        for _ in range(n_gen):
            # The last position's logits straight from the context (llm.scores is only filled
            # with logits_all, which would also slow the prefill).
            ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
            tok = int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())
            llm.eval([tok])
        t2 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        prefill.append(len(ids) / (t1 - t0))
        decode.append(n_gen / (t2 - t1))
    print(json.dumps({
        "engine": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "threads": threads,
        "prefill_tokens_per_s": statistics.median(prefill),
        "decode_tokens_per_s": statistics.median(decode),
    }))


if __name__ == "__main__":
    main()
