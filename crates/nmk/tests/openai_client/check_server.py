"""Drives `nmk serve` with the official `openai` Python client, as an application would.

Usage: check_server.py BASE_URL API_KEY MODEL MAX_TOKENS_CAP

Every call's outcome is recorded; nothing is judged here. The script prints one JSON summary on
stdout and the Rust test (crates/nmk/tests/serve_openai.rs) asserts it, so a client-side
surprise (an exception where a response was expected) is reported, not hidden.
"""

import json
import sys
import traceback

import openai

PRIMITIVE = "what is the gcd of 12 and 18"
FREE = "Name the capital city of France."


def nmk_of(obj):
    """The server's extra `nmk` object, read the two ways a client can reach unknown fields."""
    extra = (obj.model_extra or {}).get("nmk")
    dumped = obj.model_dump().get("nmk")
    return {"model_extra": extra, "model_dump": dumped}


def error_of(exc):
    return {
        "class": type(exc).__name__,
        "status": getattr(exc, "status_code", None),
        "is_bad_request": isinstance(exc, openai.BadRequestError),
        "is_authentication": isinstance(exc, openai.AuthenticationError),
        "is_not_found": isinstance(exc, openai.NotFoundError),
        "message": str(exc),
    }


def attempt(fn):
    """Runs one call: its result, or the error it raised (never both)."""
    try:
        return {"ok": fn(), "error": None}
    except openai.APIStatusError as exc:
        return {"ok": None, "error": error_of(exc)}
    except Exception as exc:  # a transport or parsing failure: reported for the Rust test
        return {"ok": None, "error": {"class": type(exc).__name__, "status": None,
                                      "message": "".join(traceback.format_exception(exc))}}


def main():
    base_url, key, model, cap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # No retries: a refusal must surface as the refusal, not be retried into something else.
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=170)
    summary = {"openai_version": openai.__version__}

    summary["models"] = attempt(lambda: [m.id for m in client.models.list()])

    def chat(text, max_tokens):
        resp = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens)
        return {
            "content": resp.choices[0].message.content,
            "finish_reason": resp.choices[0].finish_reason,
            "completion_tokens": resp.usage.completion_tokens,
            "nmk": nmk_of(resp),
        }

    summary["primitive"] = attempt(lambda: chat(PRIMITIVE, 16))
    summary["free"] = attempt(lambda: chat(FREE, 12))

    def stream():
        chunks = list(client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": FREE}], max_tokens=12,
            stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        final = chunks[-1]
        return {
            "chunks": len(chunks),
            "text": text,
            "final_finish_reason": final.choices[0].finish_reason,
            "final_completion_tokens": final.usage.completion_tokens if final.usage else None,
            "final_nmk": nmk_of(final),
            "earlier_chunks_with_nmk": sum(1 for c in chunks[:-1] if nmk_of(c)["model_extra"]),
        }

    summary["stream"] = attempt(stream)

    def completion():
        resp = client.completions.create(model=model, prompt="The capital of France is",
                                         max_tokens=4)
        return {
            "text": resp.choices[0].text,
            "completion_tokens": resp.usage.completion_tokens,
            "nmk": nmk_of(resp),
        }

    summary["completion"] = attempt(completion)

    summary["empty_messages"] = attempt(lambda: client.chat.completions.create(
        model=model, messages=[], max_tokens=4).model_dump())
    summary["over_cap"] = attempt(lambda: chat(PRIMITIVE, cap + 1))
    summary["at_cap"] = attempt(lambda: chat(PRIMITIVE, cap))
    summary["unknown_model"] = attempt(lambda: client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=4).model_dump())

    wrong = openai.OpenAI(base_url=base_url, api_key=key + "-wrong", max_retries=0, timeout=60)
    summary["wrong_key_models"] = attempt(lambda: [m.id for m in wrong.models.list()])
    summary["wrong_key_chat"] = attempt(lambda: wrong.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PRIMITIVE}], max_tokens=4).model_dump())

    print(json.dumps(summary))


if __name__ == "__main__":
    main()
