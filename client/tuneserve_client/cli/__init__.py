"""The `tuneserve` command line: argument parsing (`main`), one module per command group, and the terminal and HTML
rendering. Separate from the library, which imports none of it (nor rich or matplotlib)."""
