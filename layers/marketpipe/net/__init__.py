"""Network plumbing every adapter shares: backoff and retries, sliding-window rate limits, polite REST.

``backoff`` holds the one capped exponential backoff with full jitter and the one retry loop (sync and
async); ``ratelimit`` the one sliding-window limiter; ``rest`` the GET client with retries, Retry-After
and per-exchange hooks. This package imports nothing from marketpipe but ``errors`` and ``timeutil``,
so collectors, alert channels, the execution clients and the AWS adapters can all use it.
"""
