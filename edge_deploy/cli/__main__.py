"""`python -m edge_deploy.cli` is `edge-deploy`."""

from edge_deploy.cli import main

main()
