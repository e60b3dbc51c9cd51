"""Attacks the security scenarios run from an attacker node on an access network (§4, §8):
each a small program that prints what it sent and what it observed, for the scenario to judge."""
