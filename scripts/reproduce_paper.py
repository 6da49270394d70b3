#!/usr/bin/env python
"""Reproduce the reference paper (Figs. 1-4, systematics, a Bayesian example) into outputs/.

Equivalent to `nuinfer reproduce [--quick]`.
"""

import sys

from nuinfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", *sys.argv[1:]]))
