"""What a CUDA serving engine sees of a GPU: its compute capability and the total memory CUDA reports.

Two facts the catalogue (``assets/gpus.csv``) does not hold, kept here because only the serving engines
(vLLM, SGLang, transformers) need them:

- **Compute capability** gates quantization kernels in vLLM (FP8 below 8.9 falls back to Marlin
  weight-only, bf16 needs 8.0, AWQ 7.5). By architecture generation: 7.0 Volta (V100), 7.5 Turing (T4),
  8.0 Ampere datacenter (A100), 8.6 Ampere GA10x (RTX 30, RTX A6000, A10, A40), 8.9 Ada (RTX 40, RTX 6000
  Ada, L4, L40S), 9.0 Hopper (H100, H200) -- https://www.technolynx.com/post/cuda-compute-capability-explained
  ("7.0 Volta (V100) 7.5 Turing (RTX 20xx, T4) 8.0 Ampere (A100) 8.6 Ampere (RTX 30xx) 8.9 Ada Lovelace
  (RTX 40xx, L40) 9.0 Hopper (H100)"); 10.0 Blackwell datacenter (B200) and 12.0 Blackwell RTX (RTX 50,
  RTX PRO 6000 Blackwell) -- https://michaelbommarito.com/wiki/programming/tools/gpu-compute-capability
  (a copy of NVIDIA's CUDA GPUs list); H200 9.0 and B200 10.0 also https://gpu-ark.ru/en/cuda-compute-capability.
  AMD, Intel and Apple devices have none (``None``): vLLM's CUDA gates do not apply to them.
- **CUDA-visible total memory** (``torch.cuda.mem_get_info()[1]``): vLLM's budget is
  ``gpu_memory_utilization x total`` and SGLang's pool is carved from it, so the engines need the total
  as the driver reports it, not as the card is sold. NVIDIA sells memory in binary gigabytes and the
  driver keeps 1-2 %: logged totals are 79.19 GiB on an "80 GB" H100 (llm-d-planner v0.19.0 logs:
  "Free memory on device (78.68/79.19 GiB)"), 23.58 GiB on a "24 GB" RTX 3090 (vllm-project/vllm issue
  #10517: "total_gpu_memory=23.58GiB") and 178.36 GiB on a "180 GB" B200 (vllm-project/vllm PR #21489:
  "Free memory on device (177.66/178.36 GiB)"). Devices without a logged total get
  ``memory_gb x GiB x 0.98``, the lowest of those three ratios (23.58 / 24 = 0.9825); a ``custom:`` device
  is taken as given (the user typed what their driver reports).
"""

from __future__ import annotations

from calculator import units
from calculator.hardware import Category, GpuSpec

COMPUTE_CAPABILITY: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("V100 32GB",), (7, 0)),
    **dict.fromkeys(("T4",), (7, 5)),
    **dict.fromkeys(("A100 40GB", "A100 80GB SXM", "A100 80GB PCIe"), (8, 0)),
    **dict.fromkeys(
        ("RTX 3060 12GB", "RTX 3060 Ti", "RTX 3070", "RTX 3080 10GB", "RTX 3080 Ti", "RTX 3090",
         "RTX 3090 Ti", "RTX A6000", "A10", "A40"), (8, 6)),
    **dict.fromkeys(
        ("RTX 4060", "RTX 4060 Ti 8GB", "RTX 4060 Ti 16GB", "RTX 4070", "RTX 4070 SUPER", "RTX 4070 Ti",
         "RTX 4070 Ti SUPER", "RTX 4080", "RTX 4080 SUPER", "RTX 4090", "RTX 6000 Ada", "L4", "L40S"), (8, 9)),
    **dict.fromkeys(("H100 PCIe", "H100 SXM", "H200"), (9, 0)),
    **dict.fromkeys(("B200",), (10, 0)),
    **dict.fromkeys(
        ("RTX 5060 Ti 16GB", "RTX 5070", "RTX 5070 Ti", "RTX 5080", "RTX 5090", "RTX PRO 6000 Blackwell"), (12, 0)),
}  # fmt: skip
"""Catalogue name -> (major, minor); sources in the module docstring."""

LOGGED_TOTAL_BYTES: dict[str, int] = {
    "H100 SXM": round(79.19 * units.GiB),
    "RTX 3090": round(23.58 * units.GiB),
    "B200": round(178.36 * units.GiB),
}
"""Catalogue name -> total memory as CUDA reports it, from real start-up logs (module docstring)."""

VISIBLE_FRACTION = 0.98
"""Reported total / sold binary size, the lowest of the logged cards (RTX 3090: 23.58 / 24)."""


def compute_capability(gpu: GpuSpec) -> tuple[int, int] | None:
    """(major, minor) of a catalogue NVIDIA device; None for other vendors, Apple and custom devices."""
    return COMPUTE_CAPABILITY.get(gpu.name)


def cuda_total_bytes(gpu: GpuSpec) -> tuple[int, str]:
    """Total memory CUDA reports for ``gpu`` and how it was found (a log, the 0.98 rule, or as given)."""
    if gpu.name in LOGGED_TOTAL_BYTES:
        return LOGGED_TOTAL_BYTES[gpu.name], "total logged by vLLM on this card"
    if gpu.category is Category.CUSTOM:
        return gpu.memory_bytes, "custom device: memory taken as given"
    sold_gib = gpu.memory_bytes / units.GB  # "80 GB" cards carry 80 GiB of DRAM
    return round(sold_gib * units.GiB * VISIBLE_FRACTION), (
        f"{sold_gib:g} GiB sold x {VISIBLE_FRACTION} (driver reserve; no logged total for this card: "
        "give custom:<total>GiB from your log's 'Free memory on device (free/total GiB)' to be exact)"
    )
