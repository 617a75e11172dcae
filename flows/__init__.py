"""Flow assembly and command-line entry points."""
