"""Interop matrix: every MN kernel x every CN kernel x every SCTP setting, one scenario per cell."""
