"""The model engine: a worker process running torch + transformers, and its client.

Never imports textual. The UI imports only `protocol` and `client`, which import no
torch or transformers; the heavy modules are imported inside the worker process.
"""
