"""Dependencies' warnings that are known to be harmless, kept off the terminal and out of logs.

A testbed program's stderr is its own: one-line errors, progress, and machine output that
scripts parse. ``install()`` runs first where a program starts (the CLI, and the daemons whose
logs a failure message quotes). It silences only the warnings named here, each by category
and by the module that triggers it; every other warning still shows as Python's defaults say.
"""

from __future__ import annotations

import warnings


def install() -> None:
    # dnspython (2.7 to at least 2.9) names cryptography's DSA key classes in
    # dns/dnssecalgs/dsa.py at import time, and cryptography 51 deprecates DSA with a warning
    # per name: eight lines on every start of a program that imports dns.dnssecalgs (location
    # management's SIG(0) signer does). testbed signs with ECDSA P-256 and Ed25519 only and
    # never touches DSA. (The lock holds cryptography 50, which aioquic's pyOpenSSL allows,
    # but a lock made with newer releases brings the warnings back.)
    try:
        from cryptography.utils import CryptographyDeprecationWarning
    except ImportError:  # an older cryptography: no such warning to silence
        return
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                            module=r"dns\.dnssecalgs\.dsa")
