"""Figures, their export to files (HTML, PNG), and the offline report over executed notebooks."""
