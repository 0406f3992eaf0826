#!/usr/bin/env python3
"""llama.cpp's logits for the engine conformance test: teacher forcing and free greedy streams.

Usage: logits.py MODEL.gguf REQUEST.json [--out FILE]

REQUEST.json:
  {"cases": [{"prompt": [ids], "continuation": [ids]}, ...],   # continuation optional
   "n_greedy": N,                  # free greedy tokens per prompt (default 64)
   "logits_out": "PATH"}           # where the teacher-forced logits go (raw float32 LE)

For every case, llama.cpp (one thread, one sequence, no sampling) is given prompt +
continuation[:-1] in one batch with logits requested at every position (`logits_all`), and the
logits of the positions len(prompt)-1 .. len(prompt)+len(continuation)-2 (those predicting each
continuation token) are appended to PATH: case after case, step after step, n_vocab float32
little-endian each. PATH is binary because the payload is large (Qwen2.5: 152k logits a step).

When a case has no continuation, llama.cpp's own free greedy stream (below) is the
continuation and its steps' logits are the forced logits (llama.cpp fed those tokens one at a
time, as it generates), so the forced steps are n_greedy and no batch is run.

From the prompt alone, N tokens are decoded greedily the way llama.cpp generates: the
prompt as one batch, then one token per decode, the argmax (lowest id on a tie) fed back, end of
generation ignored. For each greedy step the JSON carries the chosen id and the top-2 logit gap.

The JSON printed (or written to --out): llama-cpp-python's version, n_vocab, the logits file and
per case: forced_steps, the continuation forced, greedy ids, greedy_gap.
"""

import os
import sys

# This directory holds tokenize.py, which would shadow the standard library's tokenize module
# (imported by numpy through inspect/linecache): drop it from the module path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

import llama_cpp  # noqa: E402

_QUIET = None


def top2_gap(row):
    top = np.partition(row, -2)[-2:]
    return float(top[1] - top[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("request")
    ap.add_argument("--out", help="write the JSON here instead of stdout")
    args = ap.parse_args()

    with open(args.request, encoding="utf-8") as f:
        req = json.load(f)
    cases = req["cases"]
    n_greedy = int(req.get("n_greedy", 64))
    logits_out = req["logits_out"]

    verbose = os.environ.get("NMK_PEER_VERBOSE") == "1"
    global _QUIET  # the callback must outlive every llama.cpp call
    if not verbose:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, user: None)
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))

    longest = max(len(c["prompt"]) + max(len(c.get("continuation") or []), n_greedy) for c in cases)
    n_ctx = longest + 8
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                          n_threads=1, n_threads_batch=1, logits_all=True, verbose=verbose)
    n_vocab = llm.n_vocab()

    out_cases = []
    with open(logits_out, "wb") as lf:
        for c in cases:
            prompt = [int(t) for t in c["prompt"]]
            if not prompt:
                sys.exit("every case needs a non-empty prompt")
            p = len(prompt)

            # Free greedy: prompt as a batch, then one token at a time.
            llm.reset()
            llm.eval(prompt)
            greedy, gaps, rows = [], [], []
            for _ in range(n_greedy):
                row = llm.scores[llm.n_tokens - 1]
                tok = int(np.argmax(row))
                greedy.append(tok)
                gaps.append(top2_gap(row))
                rows.append(np.array(row, dtype="<f4"))
                llm.eval([tok])

            if c.get("continuation"):
                # Teacher forcing: one batch, logits everywhere.
                cont = [int(t) for t in c["continuation"]]
                llm.reset()
                llm.eval(prompt + cont[:-1])
                forced = np.ascontiguousarray(llm.scores[p - 1:p - 1 + len(cont), :], dtype="<f4")
            else:
                # The greedy stream was llama.cpp fed its own tokens one at a time: those steps
                # are the teacher-forced logits of that stream, as llama.cpp decodes it.
                cont = greedy
                forced = np.stack(rows) if rows else np.zeros((0, n_vocab), dtype="<f4")
            lf.write(forced.tobytes())
            out_cases.append({"forced_steps": len(cont), "continuation": cont, "greedy": greedy, "greedy_gap": gaps})

    result = {
        "generator": "bench/llama_peer/logits.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "n_vocab": int(n_vocab),
        "logits_file": logits_out,
        "cases": out_cases,
    }
    text = json.dumps(result, separators=(",", ":")) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
