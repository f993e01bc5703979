"""`python -m mcp_latent` == `mcp-latent`."""

import sys

from mcp_latent.cli.main import main

sys.exit(main())
