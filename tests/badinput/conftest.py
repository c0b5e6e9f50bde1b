"""Bad-input tests reuse the whole-node fixtures of tests/e2e."""

from __future__ import annotations

from tests.e2e.conftest import make_node, moderated_prosody

__all__ = ["make_node", "moderated_prosody"]
