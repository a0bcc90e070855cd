import tuneserve_client


def test_all_imports_are_exported() -> None:
    included_private_members = ["__version__"]
    assert tuneserve_client.__all__ == sorted(
        (
            member
            for member in vars(tuneserve_client)
            if not member.startswith("_") or member in included_private_members
        ),
        key=str.casefold,
    )


def test_exported_members_are_defined() -> None:
    for name in tuneserve_client.__all__:
        assert getattr(tuneserve_client, name) is not None, name
