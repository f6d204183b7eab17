"""Operator audits: checks an operator runs before trusting an install, each a list of
findings (never a secret's value), for the CLI to print and exit non-zero on."""
