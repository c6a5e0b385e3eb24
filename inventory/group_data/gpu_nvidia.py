"""NVIDIA GPU hosts: Ollama installed natively, one systemd unit per GPU type."""

backend = "ollama"
backend_install = "native"
keep_alive = "30m"
num_parallel = 2  # OLLAMA_NUM_PARALLEL: one value for every model of a server
vram_headroom_mb = 1024
