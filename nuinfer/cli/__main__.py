import sys

from nuinfer.cli import main

sys.exit(main())
