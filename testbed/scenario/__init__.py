"""Scenarios: scripted movement of the MN (YAML), run against a lab while every link is captured."""
