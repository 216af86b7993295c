"""The API's rules, one module per area: plain async functions of (bus, settings, input) -> result.

Routes parse the request, call one of these and return what it answers; nothing here knows HTTP.
"""
