"""`python -m bench`: steer against the relays a user would pick instead, in one run."""
