"""Limits shared by the transports."""

# Idle keep-alive connections a client keeps per server.
MAX_IDLE_CONNECTIONS = 64
# Idle receive buffers a client keeps so large responses land in memory that is
# already paged in; freed by close().
MAX_IDLE_BUFFER_BYTES = 1 << 30
# Largest response body a client accepts (ModelClient's max_response_body_bytes).
DEFAULT_MAX_RESPONSE_BODY_BYTES = 16 << 30
