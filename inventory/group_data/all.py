"""Fleet-wide data: the model catalog, pinned versions and the router's settings.

Every host sees these keys, and they must be the same on every host (``deploy/inventory.py``
checks). A catalog entry names a model once and says how each backend kind gets it:
``ollama`` (a tag) for Ollama, ``gguf`` (url, sha256, file) for llama-swap and llama-server.
``groups`` says which inventory groups hold it. Sizes are MiB of VRAM for the weights;
``kv_mb_per_1k_ctx`` is the f16 KV cache per 1024 tokens per slot
(2 x layers x kv_heads x head_dim x 2 bytes). See docs/inventory.md.

The GGUF sha256 values below (except gemma3-270m, which the local fleet downloads and checks)
are placeholders in the right shape: copy the real one from the file's page before a deploy.
"""

model_catalog = {
    "gemma3-270m": {
        "ollama": "gemma3:270m",
        "gguf": {
            "url": "https://huggingface.co/ggml-org/gemma-3-270m-GGUF/resolve/main/gemma-3-270m-Q4_K_M.gguf",
            "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "file": "gemma-3-270m-q4_k_m.gguf",
        },
        "size_mb": 242,
        "kv_mb_per_1k_ctx": 18,
        "ctx": 8192,
        "slots": 4,
        "groups": ["gpu_nvidia", "gpu_amd", "cpu"],
        "aliases": ["tiny"],
    },
    "llama3.2-3b": {
        "ollama": "llama3.2:3b",
        "gguf": {
            "url": "https://huggingface.co/bartowski/Llama-3.2-3B-Instruct-GGUF/resolve/main/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
            "sha256": "6c1a2b41161032677be168d354123594c0e6e67d2b9227c84f296ad037c728ff",
            "file": "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        },
        "size_mb": 1926,
        "kv_mb_per_1k_ctx": 112,
        "ctx": 8192,
        "slots": 2,
        "groups": ["gpu_nvidia", "gpu_amd", "cpu"],
    },
    "llama3.1-8b": {
        "ollama": "llama3.1:8b",
        "gguf": {
            "url": "https://huggingface.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/resolve/main/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
            "sha256": "7b064f5842bf9532c91456deda288a1b672397a54fa729aa665952863033557c",
            "file": "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
        },
        "size_mb": 4693,
        "kv_mb_per_1k_ctx": 128,
        "ctx": 8192,
        "slots": 2,
        "groups": ["gpu_nvidia", "gpu_amd", "cpu"],
        "aliases": ["llama3.1"],
    },
    "qwen2.5-coder-14b": {
        "ollama": "qwen2.5-coder:14b",
        "gguf": {
            "url": "https://huggingface.co/Qwen/Qwen2.5-Coder-14B-Instruct-GGUF/resolve/main/qwen2.5-coder-14b-instruct-q4_k_m.gguf",
            "sha256": "d3b2c6f6a2e0b6f3e3e1d8c1f2a0b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2",
            "file": "qwen2.5-coder-14b-instruct-q4_k_m.gguf",
        },
        "size_mb": 8572,
        "kv_mb_per_1k_ctx": 192,
        "ctx": 16384,
        "slots": 1,
        "groups": ["gpu_nvidia", "gpu_amd"],
    },
    "gemma3-27b": {
        "ollama": "gemma3:27b",
        "gguf": {
            "url": "https://huggingface.co/bartowski/google_gemma-3-27b-it-GGUF/resolve/main/google_gemma-3-27b-it-Q4_K_M.gguf",
            "sha256": "9c4a6f8f0e5bfa1d2c7e3b6a9d8f1e4c2b5a7d9e0f3c6b8a1d4e7f0a2c5b8e1d",
            "file": "google_gemma-3-27b-it-Q4_K_M.gguf",
        },
        "size_mb": 15936,
        "kv_mb_per_1k_ctx": 496,
        "ctx": 8192,
        "slots": 1,
        "groups": ["gpu_nvidia", "gpu_amd"],
    },
    "llama3.3-70b": {
        "ollama": "llama3.3:70b",
        "gguf": {
            "url": "https://huggingface.co/bartowski/Llama-3.3-70B-Instruct-GGUF/resolve/main/Llama-3.3-70B-Instruct-Q4_K_M.gguf",
            "sha256": "4f2a6c8e0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a",
            "file": "Llama-3.3-70B-Instruct-Q4_K_M.gguf",
        },
        "size_mb": 40550,
        "kv_mb_per_1k_ctx": 320,
        "ctx": 8192,
        "slots": 1,
        "groups": ["gpu_amd"],
    },
    "nomic-embed-text": {
        "ollama": "nomic-embed-text:v1.5",
        "gguf": {
            "url": "https://huggingface.co/nomic-ai/nomic-embed-text-v1.5-GGUF/resolve/main/nomic-embed-text-v1.5.Q8_0.gguf",
            "sha256": "3e24342164b3d94991ba9692fdc0dd08e3fd7362e0aacc396a9a5c54a544c3b7",
            "file": "nomic-embed-text-v1.5.Q8_0.gguf",
        },
        "size_mb": 140,
        "kv_mb_per_1k_ctx": 36,
        "ctx": 2048,
        "slots": 4,
        "groups": ["gpu_nvidia", "cpu"],
        "aliases": ["embed"],
    },
}

router = {
    "port": 11434,
    "admin_token_file": "/etc/modelfleet/admin-token",
}
