"""Message and state models: one pydantic model per command, event, reply and stored record."""
