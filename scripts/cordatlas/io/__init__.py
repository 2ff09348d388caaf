"""Input and output: reading every supported count format, downloads, and writers of those formats."""
