"""CPU-only hosts: llama-server in router mode, planned against RAM."""

backend = "llama-server"
ram_headroom_mb = 8192
keep_alive = "15m"
