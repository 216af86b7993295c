"""NATS credentials: nkeys, the JWTs of the operator, accounts and users, and what each user may do."""
