"""Shared core of the phone agent's control plane.

Both deployables import from here: settings, the Realtime protocol pieces (webhook verification,
call-control client, event models, session config), the Table Storage call store, logging and
PII redaction. Nothing in this package starts a server.
"""
