"""Call an mcp-latent HTTP server that requires a bearer token, with the official MCP Python SDK."""

import asyncio
import os
from pathlib import Path

import httpx2  # the HTTP client the MCP SDK is built on
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL = os.environ.get("LATENT_URL", "http://127.0.0.1:8765/mcp")
TOKEN = Path("~/.mcp-latent-token").expanduser().read_text().strip()


async def main() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=300) as http:
        async with Client(streamable_http_client(URL, http_client=http)) as client:
            result = await client.call_tool("evaluate", {"text": "fix a typo in the README", "profiles": ["risk"]})
            print(result.content[0].text)


asyncio.run(main())
