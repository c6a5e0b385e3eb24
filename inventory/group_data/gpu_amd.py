"""AMD GPU hosts (ROCm). The backend kind is chosen per host in the inventory."""

backend = "llama-swap"
keep_alive = "30m"
vram_headroom_mb = 1024
