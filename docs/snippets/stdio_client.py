"""Drive mcp-latent over stdio with the official MCP Python SDK (run from the checkout: `.venv/bin/python ...`)."""

import asyncio
import os

from mcp import Client, StdioServerParameters

server = StdioServerParameters(
    command=".venv/bin/mcp-latent",  # or the absolute path of your checkout's .venv/bin/mcp-latent
    args=["serve", "--data-dir", os.path.expanduser("~/latent-data")],
)


async def main() -> None:
    async with Client(server, read_timeout_seconds=300) as client:  # the first start fits the shipped profiles
        text = "Deploy the untested payment migration on Friday night"
        made = await client.call_tool("handoff", {"text": text, "evaluate": ["risk"]})
        print(made.content[0].text)  # minified JSON; made.structured_content holds the same as a dict
        handle = made.structured_content["handle"]
        judged = await client.call_tool("evaluate", {"handle": handle, "profiles": ["risk", "roi"]})
        print(judged.content[0].text)
        taught = await client.call_tool("teach", {"handle": handle, "labels": {"roi": "low"}})
        print(taught.content[0].text)


asyncio.run(main())
