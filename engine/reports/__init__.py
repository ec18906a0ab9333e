"""The manager's reports: queries (one module per report, aggregation in SQL), pure
statistics (``stats``) and renderers (table, JSON, CSV, self-contained HTML with SVG charts).
"""
