"""`python -m mcp_latent` == `mcp-latent`."""

import sys

from .cli import main

sys.exit(main())
