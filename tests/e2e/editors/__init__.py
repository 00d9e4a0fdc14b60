"""Support for the real-editor tests (``tests/e2e/test_editor_*.py``)."""
