"""Request bodies in the contract's field names."""
