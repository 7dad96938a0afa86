"""`python3 -m edge_deploy.runtime`: the edge image's entry point (see edge_deploy.runtime)."""

import sys

from edge_deploy.runtime.server import main

sys.exit(main())
