"""Report: tables, figures and maps rendered from result files."""
