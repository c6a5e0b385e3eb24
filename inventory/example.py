"""A realistic mixed fleet, planned offline thanks to the ``gpus:`` overrides.

    .venv/bin/modelfleet plan inventory/example.py
    .venv/bin/modelfleet render inventory/example.py --out render-out
    pyinfra inventory/example.py deploy.py          # against real hosts

Group data lives in ``inventory/group_data/<group>.py``; ``all.py`` holds the model catalog.
GPU memory figures are what nvidia-smi / amd-smi report (MiB).
"""

# NVIDIA workstation-class host: two GPU types, so two Ollama instances (2x 4090, 1x A4000).
gpu_nvidia = [
    (
        "gpu-nv-01.lan",
        {
            "node_name": "gpu-nv-01",
            "gpus": [
                {"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "count": 2},
                {"name": "NVIDIA RTX A4000", "vram_mb": 16376},
            ],
            "ram_mb": 131072,
            "cpu_cores": 32,
        },
    ),
]

# AMD hosts: an MI300X server behind llama-swap, and a 2x RX 7900 XTX box running the Ollama
# ROCm container.
gpu_amd = [
    (
        "gpu-amd-01.lan",
        {
            "node_name": "gpu-amd-01",
            "backend": "llama-swap",
            "gpus": [{"name": "AMD Instinct MI300X", "vram_mb": 196592}],
            "ram_mb": 524288,
            "cpu_cores": 96,
        },
    ),
    (
        "gpu-amd-02.lan",
        {
            "node_name": "gpu-amd-02",
            "backend": "ollama",
            "backend_install": "container",
            "num_parallel": 1,
            "gpus": [{"name": "AMD Radeon RX 7900 XTX", "vram_mb": 24560, "count": 2}],
            "ram_mb": 65536,
            "cpu_cores": 16,
        },
    ),
]

# CPU-only host: llama-server in router mode, planned against RAM.
cpu = [
    (
        "cpu-01.lan",
        {"node_name": "cpu-01", "gpus": [], "ram_mb": 65536, "cpu_cores": 32},
    ),
]

# The router, in front of everything.
router = [("router-01.lan", {"node_name": "router-01"})]
