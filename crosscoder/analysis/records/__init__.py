"""Typed records of the analysis files, shared by the writer and every reader (docs/ANALYSIS_FORMAT.md)."""
