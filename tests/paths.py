"""The checkout's folders, named once, so that no test counts the parent levels of its own file (tests live in
subfolders of tests/ at different depths)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # this file sits directly in tests/, which sits in the checkout
ZOOS = REPO / "data" / "zoos"  # the committed zoos
FIXTURES = REPO / "tests" / "fixtures"  # folders written by earlier code, read back by today's
SHARED = REPO.parent / "shared"  # data shipped beside the checkout (CIFAR-10, split files), as `make setup` places it
