"""Thin adapters behind the Protocols in `base`; vendor errors never leave them."""
