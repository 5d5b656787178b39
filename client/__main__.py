"""Allow ``python -m devpi.client`` where the console script is not on PATH."""
from devpi.client.main import main

raise SystemExit(main())
