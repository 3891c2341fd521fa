"""A local double of the Realtime SIP control plane: signed webhooks, call-control REST, the
control WebSocket with real event shapes, scripted callers, two dialects and fault injection.
Never deployed; tests, the local demo and benchmarks stand on it."""
