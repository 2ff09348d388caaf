"""The embedded demo: a simulated cord-vs-adult study with known truth, written in several formats."""
