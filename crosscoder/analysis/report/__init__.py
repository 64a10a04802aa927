"""Presentation of an analysis folder: the self-contained HTML report, the plots and the rendering check.

`data` (read the folder), `charts` (every chart, drawn once), `html` (escaping, token highlighting, styles), `parts`
(report sections), `page` (the page and `write_report`), `plots` (PNG files), `check` (headless-Chromium check).
"""
