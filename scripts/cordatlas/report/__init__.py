"""The study report: one self-contained page built from the tables and figures the workflow wrote.

Nothing here recomputes science. :mod:`findings` turns the results tables into one row per
tested claim; :mod:`sections` builds each section's context from the tables; :mod:`render`
fills the jinja2 templates (autoescaped) and copies the figures beside the page.
"""
