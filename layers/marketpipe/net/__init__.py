"""Network plumbing every adapter shares: backoff and retries, sliding-window rate limits, polite REST.

``backoff`` holds the one capped exponential backoff with jitter and the one retry loop (sync and
async); ``ratelimit`` the one sliding-window limiter; ``rest`` the GET client with retries, Retry-After
and per-exchange hooks; ``session`` what websocket sessions share (sleep until stop, close reasons,
running tasks together). This package imports nothing from marketpipe, so collectors, alert channels,
the execution clients and the AWS adapters can all use it.
"""
