"""Suite-wide hooks: the record of which error codes the tests produce (tests/codes.py)."""

from tests.codes import (
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_deselected,
)

__all__ = ["pytest_collection_finish", "pytest_collection_modifyitems", "pytest_deselected"]
