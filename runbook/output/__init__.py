"""What a run leaves behind: terminal output, Markdown report, JSON, JUnit XML."""
