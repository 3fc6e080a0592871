"""closecodes.py and docs/close-codes.md list the same close codes and error frames."""

from __future__ import annotations

from pathlib import Path

import channels_scale.closecodes as closecodes
from channels_scale.closecodes import CloseCode, ErrorCode

DOC = (Path(__file__).parent.parent / "docs" / "close-codes.md").read_text()


def test_every_close_code_is_in_the_module_docstring_and_the_docs_page() -> None:
    assert closecodes.__doc__ is not None
    for code in CloseCode:
        assert f"\n{code.value}   {code.name}" in closecodes.__doc__, code
        assert f"| {code.value} | `{code.name}` |" in DOC, code


def test_every_error_frame_code_is_on_the_docs_page() -> None:
    for code in ErrorCode:
        assert f"| `{code.value}` |" in DOC, code


def test_every_handshake_status_is_on_the_docs_page() -> None:
    for status in (
        closecodes.HTTP_BAD_HOST,
        closecodes.HTTP_FORBIDDEN_ORIGIN,
        closecodes.HTTP_NOT_FOUND,
    ):
        assert f"| HTTP **{status}** |" in DOC, status
