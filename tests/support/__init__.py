"""Test doubles and builders shared by the unit and integration suites."""
