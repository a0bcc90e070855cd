import tuneserve_client


def test_all_imports_are_exported() -> None:
    included_private_members = ["__version__"]
    assert tuneserve_client.__all__ == sorted(
        (
            member
            for member in vars(tuneserve_client)
            # the cli subpackage is set on the package once something imports it; the library does not (below)
            if (not member.startswith("_") or member in included_private_members) and member != "cli"
        ),
        key=str.casefold,
    )


def test_exported_members_are_defined() -> None:
    for name in tuneserve_client.__all__:
        assert getattr(tuneserve_client, name) is not None, name


def test_the_library_imports_no_cli_or_display_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tuneserve_client; c = tuneserve_client.Client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'matplotlib') "
        "or m.startswith('tuneserve_client.cli')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
