#!/usr/bin/env python3
"""A reranking method written in Python, run by agp-bench under its protocol.

The harness starts this program, writes one JSON object per line to its stdin and reads one per
line from its stdout (protocol 1, docs/external-methods.md). The model is reached through the
OpenAI-compatible endpoint the harness serves on 127.0.0.1 (OPENAI_BASE_URL): every call is
recorded, replayed offline, costed and counted like AGP's. Standard library only.

The method itself is a plain listwise prompt (LLM-Dir written from scratch): recent history,
numbered candidates, "answer with the numbers, best first". It does not learn, so it ignores
training messages other than answering them.
"""

import json
import os
import re
import sys
import urllib.error
import urllib.request

BASE_URL = os.environ["OPENAI_BASE_URL"].rstrip("/")
API_KEY = os.environ.get("OPENAI_API_KEY", "")
HISTORY = 10


def chat(prompt: str, model: str) -> str:
    body = json.dumps(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a movie recommender."},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
            "max_tokens": 64,
        }
    ).encode()
    req = urllib.request.Request(
        f"{BASE_URL}/chat/completions",
        data=body,
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {API_KEY}",
            # Lets the harness book the call under the right stage.
            "x-agp-stage": "test",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        if e.code == 502:
            # A call that failed for good (a refusal, an outage past the retries): the harness
            # scores this user as a failed call and goes on, as for its own methods.
            raise CallFailed(json.loads(body)["error"]["reason"]) from e
        # Anything else (a replay miss, a rejected request) stops the run; the harness explains.
        raise RuntimeError(f"LLM call failed: HTTP {e.code}: {body[:500]}") from e
    return answer["choices"][0]["message"]["content"]


class CallFailed(Exception):
    pass


def rank(user: dict, model: str) -> list:
    history = [h["text"] for h in user["history"][-HISTORY:]]
    candidates = [c["text"] for c in user["candidates"]]
    prompt = (
        "The user watched these movies, oldest first:\n"
        + "\n".join(f"- {t}" for t in history)
        + "\n\nRank these candidate movies by how likely the user watches them next:\n"
        + "\n".join(f"{i}. {t}" for i, t in enumerate(candidates))
        + f"\n\nAnswer with the numbers 0 to {len(candidates) - 1} separated by commas, "
        "most likely first, and nothing else."
    )
    answer = chat(prompt, model)
    ranking = []
    for token in re.findall(r"\d+", answer):
        i = int(token)
        if i < len(candidates) and i not in ranking:
            ranking.append(i)
    # Candidates the model left out keep the backbone's order after the ones it ranked.
    return ranking + [i for i in range(len(candidates)) if i not in ranking]


def main() -> None:
    model = "default"
    for line in sys.stdin:
        msg = json.loads(line)
        kind = msg["type"]
        if kind == "hello":
            model = msg["llm_model"]
            out = {"type": "ready", "protocol": 1}
        elif kind == "rank":
            try:
                out = {"type": "ranking", "id": msg["id"], "ranking": rank(msg, model)}
            except CallFailed as e:
                out = {"type": "ranking", "id": msg["id"], "failed": str(e)}
        elif kind == "train_batch":
            rankings = [rank(u, model) for u in msg["users"]]
            out = {"type": "rankings", "id": msg["id"], "rankings": rankings}
        elif kind in ("feedback", "restore"):
            out = {"type": "ok", "id": msg["id"]}
        else:
            out = {"type": "error", "id": msg.get("id"), "message": f"unknown message {kind}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
