"""The operator dashboard: ``GET /dashboard`` (a plain page, its script and style from this
folder, no CDN) polls ``GET /dashboard/data`` every second for the figures of
services/common/figures.py. docs/operations.md says what each figure is and where it comes
from."""
