"""The pure core: file names, discovery, statements, checksums, the planner and lint.

Facts in, values out: nothing here talks to PostgreSQL or imports from ``pg/``.
"""
