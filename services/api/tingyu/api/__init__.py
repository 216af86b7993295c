"""The REST edge: validates requests, publishes commands on NATS, answers from the state stores."""
