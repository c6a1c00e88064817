"""`python -m joyq_studio [FOLDER]` starts the desktop app (the CLI is `joyq`)."""

import sys

if __name__ == "__main__":
    from joyq_studio.ui.app import main

    sys.exit(main())
