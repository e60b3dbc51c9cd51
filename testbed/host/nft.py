"""nftables from inside a process: libnftables (Debian's ``libnftables1``, the library the
``nft`` command is built on) through ctypes, so a resident process changes rules with no
process per change. A buffer given to ``run`` is one transaction: every command in it takes
effect at once, or none does."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

from testbed.errors import TestbedError

LIBRARY = "libnftables.so.1"


class NftError(TestbedError):
    pass


@cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or LIBRARY)
    except OSError as e:
        raise NftError(f"{LIBRARY} not found: install the Debian package 'libnftables1' "
                       "(run `make setup`)") from e
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


class Nft:
    """One libnftables context in this process's network namespace."""

    def __init__(self) -> None:
        self.lib = _lib()
        self.ctx = self.lib.nft_ctx_new(0)
        self.lib.nft_ctx_buffer_output(self.ctx)
        self.lib.nft_ctx_buffer_error(self.ctx)

    def run(self, commands: str, *, check: bool = True) -> tuple[int, str, str]:
        """Run ``commands`` (nft syntax, one per line) as one transaction."""
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, commands.encode())
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
        if rc != 0 and check:
            raise NftError(f"nft: {err.strip() or 'failed'} (in: {commands.strip().splitlines()[0]})")
        return rc, out, err

    def close(self) -> None:
        if self.ctx:
            self.lib.nft_ctx_free(self.ctx)
            self.ctx = None

    def __enter__(self) -> Nft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
