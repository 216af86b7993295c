"""Contracts shared by every Tingyu service: subjects, message models, settings and errors."""
