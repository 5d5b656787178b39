"""``python -m devpi.server``; in a client-only install, one line saying what to install."""
import sys

try:
    from .main import main
except ModuleNotFoundError as e:
    from .extra_check import server_extra_error

    sys.exit(server_extra_error(e))

raise SystemExit(main())
