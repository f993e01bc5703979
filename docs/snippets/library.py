"""The engine as a plain library, without MCP: the same calls the tools make."""

from pathlib import Path

from mcp_latent.service.api import LatentService
from mcp_latent.settings import Settings

service = LatentService(Settings(data_dir=Path("~/latent-data").expanduser()))
service.start()
service.wait_ready()
print(service.handoff("ship the migration tonight without tests", evaluate=["risk"]))
print(service.evaluate(text="fix a typo in the onboarding email", profiles=["risk"]))
service.close()
