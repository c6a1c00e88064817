"""Entry point of the standalone bundle (see joyq-studio.spec)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # DataLoader workers of a frozen app start here
    from joyq_studio.ui.app import main

    sys.exit(main())
