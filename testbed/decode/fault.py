"""The exception a decoder raises internally at the first violation of a format."""

from __future__ import annotations


class DecodeFault(Exception):
    """Caught by the decoder's public function and returned as the record's ``malformed``
    reason: it never leaves ``testbed.decode``."""
